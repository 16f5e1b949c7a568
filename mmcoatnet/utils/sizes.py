"""Image sizes on the command line, one form for every tool: a size is ``N`` (square) or ``HxW``;
an option that takes one size (``--shape``) also takes mmdet's ``H W``. Sides below the backbone's
minimum are refused by the parser."""
import argparse
from typing import Sequence, Tuple

from ..models.backbone import MIN_INPUT_SIDE

Size = Tuple[int, int]


def parse_size(text: str) -> Size:
    """``'N'`` or ``'HxW'`` as (H, W), for argparse's ``type=``."""
    parts = str(text).lower().split('x')
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f'a size is N or HxW (e.g. 512 or 333x517), got {text!r}')
    size = int(parts[0]), int(parts[1])
    if min(size) < MIN_INPUT_SIDE:
        raise argparse.ArgumentTypeError(
            f'CoAtNet needs sides of at least {MIN_INPUT_SIDE}, got {text!r}')
    return size


def shape_from_tokens(tokens: Sequence[str]) -> Size:
    """One size from ``N``, ``HxW`` or ``H W`` (mmdet's tools' form)."""
    if len(tokens) == 2:
        return parse_size('x'.join(tokens))
    if len(tokens) == 1:
        return parse_size(tokens[0])
    raise argparse.ArgumentTypeError(f'a shape is N, HxW or H W, got {" ".join(tokens)!r}')


class ShapeAction(argparse.Action):

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, shape_from_tokens(values))
        except argparse.ArgumentTypeError as error:
            parser.error(f'{option_string}: {error}')


def add_shape_argument(parser, flag: str = '--shape', default=None, help: str = '') -> None:
    """An option for one size: ``--shape 800 1333``, ``--shape 800x1333`` or ``--shape 512``."""
    parser.add_argument(flag, nargs='+', action=ShapeAction, default=default,
                        metavar='H W|HxW|N', help=help + ' (H W, HxW or N for a square)')


def add_sizes_argument(parser, flag: str = '--sizes', default=None, help: str = '',
                       required: bool = False) -> None:
    """An option for several sizes, each N or HxW: ``--sizes 224 333x517``."""
    parser.add_argument(flag, nargs='*' if default == [] else '+', type=parse_size,
                        default=default, metavar='HxW|N', help=help, required=required)

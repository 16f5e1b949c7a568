"""The OpenMMLab libraries mmcoatnet runs on, in one place: OpenMMLab's own releases (mmengine,
mmcv, mmdet, mmsegmentation, mmpretrain) or OneDL's maintained fork of them (onedl-mmengine,
onedl-mmcv, onedl-mmdetection, onedl-mmsegmentation, onedl-mmpretrain). The fork's distributions
import under the same names (``mmengine``, ``mmcv``, ...) and write the same folders, so pip cannot
tell them apart: neither family is a dependency of the package (pyproject.toml's extras name
each), and :func:`check_stack`, called when mmcoatnet is imported, refuses an environment that
mixes the two or holds a release outside the tested ranges, naming the distributions.

Where the fork behaves differently from OpenMMLab's releases in what mmcoatnet uses, the difference
is handled here (:func:`fix_config_scopes`, which configs/_base_/onedl_scopes.py also calls) or
where it is used (``safe_load.mmengine_loads_weights_only``); docs/install.md lists them."""
import importlib.metadata
import importlib.util
import re
from typing import Dict, List, Mapping, Optional, Tuple

OPENMMLAB = "OpenMMLab's"
ONEDL = "OneDL's fork"

# import name -> {family: (distribution, the range mmcoatnet is tested in)}. The ranges are
# pyproject.toml's extras (tests/test_newest_stack.py keeps the two equal): each family's lower
# bounds are its oldest tested releases, the upper ones what its own packages accept (mmengine,
# mmcv) or the next minor release (mmdet, mmseg, mmpretrain).
LIBRARIES: Dict[str, Dict[str, Tuple[str, str]]] = {
    'mmengine': {OPENMMLAB: ('mmengine', '>=0.7.1,<1.0.0'),
                 ONEDL: ('onedl-mmengine', '>=0.10.12,<1.0.0')},
    'mmcv': {OPENMMLAB: ('mmcv', '>=2.0.0rc4,<2.2.0'),
             ONEDL: ('onedl-mmcv', '>=2.3.6,<2.4.0')},
    'mmdet': {OPENMMLAB: ('mmdet', '>=3.0.0,<3.4'),
              ONEDL: ('onedl-mmdetection', '>=3.5.1,<3.6')},
    'mmseg': {OPENMMLAB: ('mmsegmentation', '>=1.0.0,<1.3'),
              ONEDL: ('onedl-mmsegmentation', '>=1.4.2,<1.5')},
    'mmpretrain': {OPENMMLAB: ('mmpretrain', '>=1.0.0,<1.3'),
                   ONEDL: ('onedl-mmpretrain', '>=1.3.6,<1.4')},
}
# the fork's mmengine calls torch.get_autocast_dtype (torch >= 2.4); the fork targets 2.4 to 2.8
ONEDL_TORCH = '2.4'


class IncompatibleStackError(RuntimeError):
    """The environment mixes OpenMMLab's and OneDL's distributions, or holds a release outside the
    tested ranges; the message names the distributions."""


def _version(text: str) -> tuple:
    """A release string as a comparable tuple, without the packaging library: the release numbers
    padded to 4, then the pre-release's rank and number (2.0.0rc4 < 2.0.0); a post-release or local
    part (2.0.0.post1, 2.8.0+cu128) compares as its release."""
    match = re.match(r'^v?(\d+(?:\.\d+)*)(?:[.-]?(a|b|rc)(\d*))?', text.strip().lower())
    if not match:
        return (0,)
    release = tuple(int(part) for part in match.group(1).split('.'))
    release = (release + (0, 0, 0, 0))[:4]
    pre = {'a': 0, 'b': 1, 'rc': 2}.get(match.group(2) or '', 3)
    return release + (pre, int(match.group(3) or 0))


def in_range(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies ``spec``, a comma-separated list of ``>=``, ``<`` bounds
    (as pip reads them: ``<2.2.0`` excludes 2.2.0's pre-releases too)."""
    have = _version(version)
    for bound in spec.split(','):
        bound = bound.strip()
        if bound.startswith('>=') and have < _version(bound[2:]):
            return False
        if bound.startswith('<') and not have < _version(bound[1:])[:4]:
            return False
    return True


def _canonical(name: str) -> str:
    return name.lower().replace('_', '-').replace('.', '-')


def _named(rows: List[tuple]) -> tuple:
    return next((row for row in rows if row[0] == 'mmcv'), rows[0])


def stack_problems(installed: Mapping[str, str], torch_version: Optional[str] = None) -> List[str]:
    """What is wrong with an environment holding the distributions ``installed`` ({name:
    version}) and ``torch_version``: an import name written by both families' distributions, the
    two families mixed, a release outside the tested ranges, the fork below its torch. Pure: the
    caller reads the environment (:func:`installed_distributions`)."""
    installed = {_canonical(name): version for name, version in installed.items()}
    found = {family: [(module, rows[family][0], installed[rows[family][0]])
                      for module, rows in LIBRARIES.items() if rows[family][0] in installed]
             for family in (OPENMMLAB, ONEDL)}
    ours, theirs = found[OPENMMLAB], found[ONEDL]
    problems = []
    doubled = {module for module, _, _ in ours} & {module for module, _, _ in theirs}
    for module in (m for m in LIBRARIES if m in doubled):
        a, b = LIBRARIES[module][OPENMMLAB][0], LIBRARIES[module][ONEDL][0]
        problems.append(
            f'{module} is installed twice: by {a} {installed[a]} ({OPENMMLAB}) and by {b} '
            f'{installed[b]} ({ONEDL}), which write the same {module}/ folder; keep one '
            f'(pip uninstall {a} {b}, then install the one you want)')
    left_ours = [row for row in ours if row[0] not in doubled]
    left_theirs = [row for row in theirs if row[0] not in doubled]
    if ours and theirs and (left_ours or left_theirs):
        # the two named: mmcv where it is on a side (the compiled one), else that side's first
        _, a, version_a = _named(left_ours or ours)
        _, b, version_b = _named(left_theirs or theirs)
        problems.append(
            f'{a} {version_a} ({OPENMMLAB}) and {b} {version_b} ({ONEDL}) are installed '
            'together: the fork\'s libraries are built for its own mmengine and mmcv, not '
            'OpenMMLab\'s. Use one family throughout: OpenMMLab\'s '
            f'({", ".join(dist for _, dist, _ in ours)} installed) or OneDL\'s '
            f'({", ".join(dist for _, dist, _ in theirs)} installed); docs/install.md '
            '("The newest stack") shows both')
    for family, rows in found.items():
        for module, dist, version in rows:
            spec = LIBRARIES[module][family][1]
            if not in_range(version, spec):
                problems.append(f'{dist} {version} is installed; mmcoatnet is tested with '
                                f'{dist}{spec} ({family} {module})')
    if found[ONEDL] and torch_version and _version(torch_version) < _version(ONEDL_TORCH):
        problems.append(f'torch {torch_version} is installed with OneDL\'s fork '
                        f'({found[ONEDL][0][1]}), which needs torch >= {ONEDL_TORCH}')
    return problems


def installed_distributions() -> Dict[str, str]:
    """{distribution: version} of the OpenMMLab and OneDL distributions installed here."""
    found = {}
    for rows in LIBRARIES.values():
        for dist, _ in rows.values():
            try:
                found[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
    return found


def check_stack() -> Dict[str, str]:
    """Raises :class:`IncompatibleStackError` for the problems :func:`stack_problems` finds here;
    returns the distributions found."""
    import torch
    installed = installed_distributions()
    problems = stack_problems(installed, torch.__version__)
    if problems:
        raise IncompatibleStackError('mmcoatnet cannot run on this environment: ' +
                                     '; '.join(problems))
    return installed


def onedl_installed(module: str) -> bool:
    """Whether ``module`` (mmengine, mmcv, mmdet, mmseg, mmpretrain) is OneDL's distribution."""
    try:
        importlib.metadata.version(LIBRARIES[module][ONEDL][0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def fix_config_scopes() -> None:
    """Configs name a library's own configs as base, e.g. ``mmseg::convnext/...``: mmengine
    looks the scope up in ``MODULE2PACKAGE`` (``mmseg`` -> ``mmsegmentation``), then asks if that
    distribution is installed. OneDL's mmengine asks importlib.metadata, which knows the fork's
    ``onedl-mmsegmentation`` only, and stops with "mmsegmentation is not installed". Each scope
    whose distribution is the fork's is mapped to its import name instead, which both mmengines
    resolve by finding the module. Idempotent; nothing changes on OpenMMLab's stack."""
    from mmengine.config import utils
    for module in ('mmdet', 'mmseg', 'mmpretrain'):
        if utils.MODULE2PACKAGE.get(module) not in (None, module) and onedl_installed(module) \
                and importlib.util.find_spec(module) is not None:
            utils.MODULE2PACKAGE[module] = module

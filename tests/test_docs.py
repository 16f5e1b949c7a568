"""The documentation is tested: README.md, CHANGELOG.md and every page under docs/. Links and
anchors resolve; every configs/ path and make target named exists; every tools/*.py command in a
code block parses with that tool's own argument parser; every table of measured figures equals
what tools/dev/docs_tables.py makes from its results file; every results file says which torch and
when."""
import glob
import importlib.util
import json
import os.path as osp
import re
import shlex

import pytest

from helpers import ROOT

PAGES = sorted([osp.join(ROOT, 'README.md'), osp.join(ROOT, 'CHANGELOG.md')] +
               glob.glob(osp.join(ROOT, 'docs', '*.md')) +
               glob.glob(osp.join(ROOT, 'docs', 'results', '*.md')))
PAGE_IDS = [osp.relpath(p, ROOT) for p in PAGES]
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
FENCE = re.compile(r'^```[^\n]*\n(.*?)^```', re.S | re.M)


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def without_code(text):
    return FENCE.sub('', text)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'[`*_]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path):
    found, seen = set(), {}
    for line in without_code(read(path)).splitlines():
        match = re.match(r'#{1,6} (.+)', line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f'{base}-{count}')
            seen[base] = count + 1
    return found


def code_blocks(path):
    return FENCE.findall(read(path))


def commands(path):
    """The command lines of a page's code blocks, backslash continuations joined, comments cut."""
    for block in code_blocks(path):
        for line in block.replace('\\\n', ' ').splitlines():
            line = line.split(' # ')[0].strip()
            if line and not line.startswith(('#', '$ ', '>>>')):
                yield line


@pytest.mark.parametrize('page', PAGES, ids=PAGE_IDS)
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in LINK.findall(without_code(read(page))):
        if re.match(r'^[a-z]+:', target):
            continue  # https:, mailto:
        path, _, anchor = target.partition('#')
        full = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
        if not osp.exists(full):
            broken.append(f'{target}: no {osp.relpath(full, ROOT)}')
        elif anchor and full.endswith('.md') and anchor not in anchors(full):
            broken.append(f'{target}: no heading #{anchor} in {osp.relpath(full, ROOT)}')
    assert not broken


def expand(path):
    """configs/x_{0,1}.py -> both paths; a * is matched against the tree."""
    match = re.search(r'\{([^}]*)\}', path)
    if match:
        return [p for option in match.group(1).split(',')
                for p in expand(path[:match.start()] + option + path[match.end():])]
    if '*' in path:
        return glob.glob(osp.join(ROOT, path)) and [path]
    return [path]


@pytest.mark.parametrize('page', PAGES, ids=PAGE_IDS)
def test_every_config_named_in_a_code_block_exists(page):
    missing = []
    for block in code_blocks(page):
        for path in re.findall(r'(?<![\w/])configs/[\w./{},*-]+\.py', block):
            missing += [p for p in expand(path) or [path] if not osp.exists(osp.join(ROOT, p))]
    assert not missing


def load_tool(relpath):
    spec = importlib.util.spec_from_file_location(
        'doc_tool_' + re.sub(r'\W', '_', relpath), osp.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_invocations(page):
    """(tool path, its arguments) of every tools/*.py command in the page's code blocks."""
    for line in commands(page):
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        for index, word in enumerate(words):
            match = re.search(r'(?:^|/)(tools/[\w/]+\.py)$', word)
            if match:
                args = []
                for arg in words[index + 1:]:
                    if arg in ('&&', '||', '|', ';', '>', '2>&1'):
                        break
                    args.append(arg)
                yield match.group(1), args
                break


INVOCATIONS = [(osp.relpath(page, ROOT), tool, args) for page in PAGES
               for tool, args in tool_invocations(page)]


@pytest.mark.parametrize('page, tool, args', INVOCATIONS,
                         ids=[f'{p}: {t} {" ".join(a)}'[:120] for p, t, a in INVOCATIONS])
def test_every_tool_command_parses_with_the_tools_own_parser(page, tool, args, capsys):
    assert osp.exists(osp.join(ROOT, tool)), f'{page} names {tool}, which does not exist'
    module = load_tool(tool)
    assert hasattr(module, 'parse_args'), f'{tool} has no parse_args(argv) to check commands with'
    try:
        module.parse_args(args)
    except SystemExit as stop:
        pytest.fail(f'{page}: {tool} {" ".join(args)}: {capsys.readouterr().err.strip()} '
                    f'(exit {stop.code})')


def make_targets():
    with open(osp.join(ROOT, 'Makefile')) as f:
        return {m.group(1) for m in re.finditer(r'^([a-z][\w-]*):', f.read(), re.M)}


@pytest.mark.parametrize('page', PAGES, ids=PAGE_IDS)
def test_every_make_target_named_exists(page):
    named = set(re.findall(r'(?<![\w-])make ([a-z][\w-]*)', read(page)))
    assert named - make_targets() == set()


def test_every_table_of_figures_equals_its_results_file():
    docs_tables = load_tool('tools/dev/docs_tables.py')
    stale = []
    for page in docs_tables.pages():
        text = read(page)
        if docs_tables.rendered(text, page) != text:
            stale.append(osp.relpath(page, ROOT))
    assert not stale, f'run make docs-tables: {stale}'


def test_every_table_of_figures_names_a_results_file():
    for page in PAGES:
        for block in re.findall(r'<!-- table: .*? -->\n(.*?)<!-- end table -->', read(page), re.S):
            assert 'Figures: [' in block, page


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'docs', 'results', '*.json'))),
                         ids=lambda p: osp.basename(p))
def test_every_results_file_records_the_torch_version_and_the_date(path):
    with open(path) as f:
        data = json.load(f)
    entries = data if isinstance(data, list) else [data]
    for entry in entries:
        assert re.fullmatch(r'\d{4}-\d\d-\d\d', entry.get('date', '')), entry.keys()
        assert entry.get('torch'), entry.keys()


# --------------------------------------------------------------------- figures and their sources

# Pages whose figures must say where they come from: the README and docs/. Not the CHANGELOG (the
# history the figures below may cite) nor docs/results/*.md (reports the tools write beside their
# JSON).
FIGURE_PAGES = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))
NUMBER = r'\d+(?:\.\d+)?'
# a number with a unit of time, memory, ratio or share: 13.4 s, 8 min, 2.07 GiB, 179 MB, 1.47x,
# 2-3%; not a size (800x1344), a version (2.13.0) or a name (sm_80)
UNIT_FIGURE = re.compile(
    rf'(?<![\w.\-/#])(?:{NUMBER}\s?[–-]\s?)?{NUMBER}'
    r'(?:\s?(?:GiB|MiB|KiB|GB|MB|kB|KB)\b|\s(?:ms|s|min|h|seconds?|minutes?|hours?)\b'
    r'|\s?%|x(?!\w))')
ANY_FENCE = re.compile(r'^[ \t]*```[^\n]*\n.*?^[ \t]*```[ \t]*$', re.S | re.M)  # also indented
GENERATED = re.compile(r'<!-- table: .*? -->\n.*?<!-- end table -->', re.S)
HEX_WORD = re.compile(r'\b[0-9a-f]{7,40}\b')
OTHER_PROJECTS_ISSUE = re.compile(r'\b[\w.-]+/[\w.-]+#\d+')  # pytorch/pytorch#137151
# Figures that are not measurements, with why; a set of pages limits one to them.
NOT_MEASURED = {
    '1x': ('a schedule name (12 epochs)', None),
    '3x': ('a schedule name (36 epochs); or the convention that a training step costs 3x the '
           'forward', None),
    '16 GB': ('a card size as sold (the cards train_memory.py compares with)', None),
    '24 GB': ('a card size as sold', None),
    '40 GB': ('a card size as sold', None),
    '80 GB': ('a card size as sold', None),
    '20%': ("the simulation's margin, a setting (CUDA_MARGIN_FRACTION)", None),
    '1 GiB': ("the simulation's margin, a setting (CUDA_MARGIN_FIXED_BYTES)", None),
    '15.8 GiB': ("what a 16 GB V100 reports, for scale; not measured here", {'docs/memory.md'}),
    '64 MB': ("the attention's default bias budget, a setting", None),
    '64 MiB': ("the attention's default bias budget, a setting", None),
    '256 MiB': ("the attention's default bias budget on a CUDA GPU, a setting", None),
    '32 MB': ("the eval bias cache's limit, a setting; glibc's largest mmap threshold",
              {'docs/architecture.md'}),
    '1 MiB': ('the mmap threshold train_memory.py sets, a setting', {'docs/memory.md'}),
    '1.8 MB': ("arithmetic: 12 heads x (14x14)² float32 values", {'docs/architecture.md'}),
    '0.85 GB': ("arithmetic: 12 heads x (50x84)² float32 values",
                {'docs/architecture.md', 'docs/deployment.md'}),
    '4x': ("arithmetic: a bucket's padding, twice the tokens in queries and keys",
           {'docs/architecture.md'}),
    '2x': ("arithmetic: a power-of-two bucket's padding", {'docs/architecture.md'}),
    '25%': ("arithmetic: a quarter-octave bucket's padding", {'docs/architecture.md'}),
    '1.56x': ("arithmetic: 1.25², that padding in queries and keys", {'docs/architecture.md'}),
    '1.49x': ("arithmetic: (5120 / 4200)², 800x1344's S3 padded", {'docs/architecture.md'}),
    '1%': ("the float16 test's tolerance", {'docs/architecture.md'}),
    '5 s': ("benchmark.py's --min-seconds default, a setting", {'docs/benchmarks.md'}),
    '10 s': ('the threshold of the slow tests, a setting',
             {'docs/development.md', 'docs/install.md'}),
    '15%': ("the simulation test's tolerance, a setting", {'docs/memory.md'}),
    '550 s': ("arithmetic on gpu_check's guessed costs: its sections' estimates and 34 recipe runs "
              'at RECIPE_RUN_S, not a measurement', {'docs/install.md'}),
    '0.1 GiB': ("arithmetic bound: the coarser FPN levels' maps at 800x1344", {'docs/memory.md'}),
    '10%': ("arithmetic: the assumed 30 TFLOP/s of an A100's published 312", {'docs/recipes.md'}),
}


def figure_units(text):
    """The paragraphs, list items, table rows and headings of a page, outside code blocks,
    comments and generated tables (whose figures docs_tables.py makes from their files)."""
    text = re.sub(r'<!--.*?-->', '\n', ANY_FENCE.sub('\n', GENERATED.sub('\n', text)), flags=re.S)
    unit = []
    for line in text.splitlines():
        stripped = line.lstrip()
        starts = not stripped or re.match(r'(?:[-*+]|\d+\.)\s', stripped) or \
            stripped.startswith(('|', '#'))
        if starts and unit:
            yield '\n'.join(unit)
            unit = []
        if stripped:
            unit.append(line)
        if stripped.startswith(('|', '#')):  # a table row or a heading is a unit of its own
            yield '\n'.join(unit)
            unit = []
    if unit:
        yield '\n'.join(unit)


def unit_figures(unit):
    """The figures with a unit in a unit's prose (inline code is a name, not a figure)."""
    return [' '.join(figure.split()) for figure in
            UNIT_FIGURE.findall(re.sub(r'`[^`\n]*`', '``', unit))]


def changelog_commits():
    return {word for word in HEX_WORD.findall(read(osp.join(ROOT, 'CHANGELOG.md')))
            if re.search(r'\d', word)}


def names_a_source(unit, results_files, commits):
    return (any(name in unit for name in results_files)
            or any(word in commits for word in HEX_WORD.findall(unit))
            or bool(OTHER_PROJECTS_ISSUE.search(unit)))


def test_the_figure_finder_finds_figures_and_sources():
    assert unit_figures('took 13.4 s and 2 h 10 min, 2.07 GiB, 1.47x, 2-3% and 0.07%') == [
        '13.4 s', '2 h', '10 min', '2.07 GiB', '1.47x', '2-3%', '0.07%']
    assert unit_figures('800x1344, 4x4 maps, torch 2.13.0, sm_80, `--budget-s 600`, 3 cores') == []
    units = list(figure_units('a\nb 1 s\n\n- item 2 s\n  more\n| row | 3 s |\n```\n4 s\n```\n'))
    assert units == ['a\nb 1 s', '- item 2 s\n  more', '| row | 3 s |']
    commits = {'e39c88b'}
    assert names_a_source('1.0 s (e39c88b)', set(), commits)
    assert names_a_source('see [x](results/flops.json)', {'flops.json'}, commits)
    assert names_a_source('pytorch/pytorch#137151: 2.62 GiB', set(), commits)
    assert not names_a_source('1.0 s (abcdef0, 1234567)', {'flops.json'}, commits)


@pytest.mark.parametrize('page', FIGURE_PAGES, ids=lambda p: osp.relpath(p, ROOT))
def test_every_figure_sits_in_a_table_or_names_where_it_comes_from(page):
    """A figure with a unit sits in a generated table, or the paragraph, list item or table row it
    is in names its results file in docs/results/, a commit the CHANGELOG names (a figure of an
    earlier run) or another project's issue, or it is in NOT_MEASURED."""
    results_files = {osp.basename(p) for p in glob.glob(osp.join(ROOT, 'docs', 'results', '*'))
                     if not p.endswith('README.md')}
    commits, name = changelog_commits(), osp.relpath(page, ROOT)
    unsourced = []
    def measured(figure):
        reason, pages = NOT_MEASURED.get(figure, (None, ()))
        return reason is None or pages is not None and name not in pages

    for unit in figure_units(read(page)):
        figures = [figure for figure in unit_figures(unit) if measured(figure)]
        if figures and not names_a_source(unit, results_files, commits):
            unsourced.append(f'{figures}: {" ".join(unit.split())[:100]}')
    assert not unsourced, ('name the results file (or the CHANGELOG commit of an earlier run) in '
                           'the same paragraph:\n' + '\n'.join(unsourced))


PYTHON_BLOCKS = [(osp.relpath(page, ROOT), block) for page in PAGES
                 for block in re.findall(r'^[ \t]*```python\n(.*?)^[ \t]*```', read(page),
                                         re.S | re.M)]


@pytest.mark.parametrize('page, block', PYTHON_BLOCKS,
                         ids=[f'{p}: {b.strip().splitlines()[0]}'[:80] for p, b in PYTHON_BLOCKS])
def test_every_python_block_is_python(page, block):
    import textwrap
    compile(textwrap.dedent(block), page, 'exec')


def test_the_own_config_example_is_a_recipes_backbone_with_adamw_and_the_recipes_decay(tmp_path):
    """The README's one example of a config of your own: the base's SGD does not survive, and the
    backbone, weights, widths and decay are those of the recipes of its size."""
    from mmengine.config import Config
    example = next(block for block in code_blocks(osp.join(ROOT, 'README.md'))
                   if "type='CoAtNet'" in block and 'optim_wrapper' in block)
    (tmp_path / 'own.py').write_text(example)
    cfg = Config.fromfile(str(tmp_path / 'own.py'))
    size = Config.fromfile(osp.join(ROOT, 'configs', '_base_', 'coatnet', 'coatnet-1-rw.py'))
    recipe = Config.fromfile(osp.join(ROOT, 'configs', 'cascade-maskrcnn_coatnet1_ms-3x_coco.py'))
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and 'momentum' not in optimizer  # the base's SGD is gone
    assert cfg.optim_wrapper.constructor == recipe.optim_wrapper.constructor
    assert cfg.optim_wrapper.paramwise_cfg == recipe.optim_wrapper.paramwise_cfg
    backbone = cfg.model.backbone
    assert backbone.arch == size.coatnet_backbone.arch == 'coatnet-1-rw'
    assert backbone.drop_path_rate == size.coatnet_backbone.drop_path_rate
    assert backbone.init_cfg.checkpoint == size.coatnet_pretrained
    assert cfg.model.neck.in_channels == size.coatnet_channels
    assert 'depth' not in backbone  # nothing of the base's ResNet is left

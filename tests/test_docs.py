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

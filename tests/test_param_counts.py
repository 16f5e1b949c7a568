"""Parameter counts of every architecture in the documentation's tables (the architecture table and
the timm weights), read from the pages themselves, so the published figures and the code cannot
drift apart."""
import glob
import os.path as osp
import re

import pytest
import torch

from mmcoatnet.models import ARCH_SETTINGS, CoAtNet

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))
HEAD_CLASSES = 1000  # "with head": a 1000-class linear classifier on the last stage's width
PAPER_ARCHS = {f'coatnet-{i}' for i in range(5)}


def table_cells(line: str):
    return [cell.strip() for cell in line.strip().strip('|').split('|')]


def markdown_tables(text: str):
    """Every table of a Markdown text, as a list of {column header: cell} rows."""
    lines = text.splitlines()
    tables, index = [], 0
    while index + 1 < len(lines):
        separator = re.fullmatch(r'\|(\s*:?-+:?\s*\|)+\s*', lines[index + 1])
        if lines[index].startswith('|') and separator:
            header, rows = table_cells(lines[index]), []
            index += 2
            while index < len(lines) and lines[index].startswith('|'):
                rows.append(dict(zip(header, table_cells(lines[index]))))
                index += 1
            tables.append(rows)
        else:
            index += 1
    return tables


def published_counts():
    """(arch, 'backbone' or 'with head', figure as printed, e.g. '23.68M') for every parameter
    figure in a documentation table whose rows are architectures."""
    tables = []
    for page in PAGES:
        with open(page, encoding='utf-8') as f:
            tables += markdown_tables(f.read())
    found = []
    for row in (row for table in tables for row in table if '`arch`' in row):
        arch = row['`arch`'].strip('`')
        for column, figure in row.items():
            if column.startswith('backbone params'):
                found.append((arch, 'backbone', figure))
            elif column == 'with head':
                found.append((arch, 'with head', figure))
    return found


PUBLISHED = published_counts()


def test_the_docs_publish_every_paper_and_timm_architecture():
    backbone = {arch for arch, kind, _ in PUBLISHED if kind == 'backbone'}
    with_head = {arch for arch, kind, _ in PUBLISHED if kind == 'with head'}
    timm_archs = {name for name in ARCH_SETTINGS if name.endswith('-rw')}
    assert PAPER_ARCHS <= with_head and PAPER_ARCHS | timm_archs <= backbone


@pytest.mark.parametrize('arch, kind, figure', PUBLISHED,
                         ids=[f'{arch} {kind}' for arch, kind, _ in PUBLISHED])
def test_parameter_count_equals_the_docs_to_their_printed_precision(arch, kind, figure):
    match = re.fullmatch(r'(\d+)\.(\d+)M', figure)
    assert match, f'{arch}: {kind} figure {figure!r} is not like 23.68M'
    with torch.device('meta'):  # shapes only: no memory, no initialisation work
        model = CoAtNet(arch=arch)
    count = sum(p.numel() for p in model.parameters())
    if kind == 'with head':
        width = model.out_channels[-1]  # S4's: out_indices default to all four stages
        count += width * HEAD_CLASSES + HEAD_CLASSES
    printed = round(count / 1e6, len(match.group(2)))
    assert printed == float(figure[:-1]), f'{arch} {kind}: {count} parameters, docs {figure}'

"""The docs' memory and GPU-hours tables beside a ``make gpu-check`` report (issue 27): with a
gpu_check_<card>.json of a GPU run in the results directory, tools/dev/docs_tables.py shows each
measured figure in the row of its recipe, beside the estimate, and names the card and the file; a
CPU run's report changes nothing. Rendered against a copy of docs/results/ with a report written as
tools/analysis_tools/gpu_check.py writes one."""
import json
import os.path as osp
import re
import shutil

import pytest
from test_docs import load_tool

from mmcoatnet.analysis import gpu_check as gc
from mmcoatnet.analysis.gpu_check import SKIP
from mmcoatnet.utils.cli import load_config
from mmcoatnet.utils.results import write_json

from helpers import ROOT

H100 = 'NVIDIA H100 80GB HBM3'
# (recipe, precision) trained in the synthetic reports, and the share of the simulated peak each
# "measures": different per run, so that a figure in the wrong row cannot match
MEASURED_RUNS = {('maskrcnn_coatnet0_ms-3x_coco', 'fp32'): 0.93,
                 ('maskrcnn_coatnet0_ms-3x_coco', 'amp'): 1.07,
                 ('upernet_coatnet1_ade20k', 'fp32'): 0.81,
                 ('dino-4scale_coatnet2_12e_coco', 'amp'): 1.12}
MEMORY_TABLES = [('README.md', 'recipes'), ('docs/recipes.md', 'recipes'),
                 ('docs/recipes.md', 'sixteen_gb'), ('docs/memory.md', 'train_memory amp')]
PRECISION_LABELS = {'fp32': ('float32',), 'amp': ('AMP', '`--amp`')}


@pytest.fixture(scope='module')
def gpu_check_tool():
    return load_tool('tools/analysis_tools/gpu_check.py')


@pytest.fixture
def results(tmp_path):
    copy = tmp_path / 'results'
    shutil.copytree(osp.join(ROOT, 'docs', 'results'), copy)
    return str(copy)


def docs_tables_reading(results_dir):
    tables = load_tool('tools/dev/docs_tables.py')
    tables.results_dir = results_dir
    return tables


def rendered_pages(tables):
    pages = {}
    for page in tables.pages():
        with open(page, encoding='utf-8') as f:
            pages[osp.relpath(page, ROOT)] = tables.rendered(f.read(), page)
    return pages


def write_report(tool, results_dir, share_by_run, device='cuda', card=H100, date='2026-12-10'):
    """A gpu_check report as the tool's main() writes it: a recipes section of rows made by its
    recipe_row from the simulations in ``results_dir`` and a "measured" peak of ``share`` times
    the simulated peak (reserved 15% above), a step time growing with the share; an AMP run
    skipped for time; returns the file's path."""
    card_bytes = 85 << 30 if device == 'cuda' else None
    rows = []
    for (recipe, precision), share in share_by_run.items():
        with open(osp.join(results_dir, f'train_memory_simulated_cuda_{precision}_{recipe}.json')) \
                as f:
            simulation = json.load(f)
        peak = simulation['peak_bytes']['default']['total']
        row = dict(recipe=recipe, precision=precision, config=f'configs/{recipe}.py',
                   batch=simulation['batch'], shape=simulation['shape'],
                   simulated_total_bytes=peak, simulated_needed_bytes=simulation['needed_bytes'][
                       'default'],
                   measured=dict(seconds=0.5 * share, losses=[3.0, 2.9],
                                 peak_allocated_bytes=int(peak * share),
                                 peak_reserved_bytes=int(peak * share * 1.15)))
        rows.append(tool.recipe_row(row, load_config(osp.join(ROOT, row['config'])), card_bytes))
    rows.append(gc.skipped('upernet_coatnet1_ade20k amp', 'not enough time left', True))
    sections = {name: dict(verdict=SKIP, seconds=0.0, items=[gc.skipped(name, 'not run')])
                for name in gc.SECTIONS}
    sections['recipes'] = dict(verdict=gc.section_verdict(rows), seconds=1.0, items=rows)
    report = dict(tool='gpu_check', device=device, requested_device='auto', device_name=card,
                  quick=False, budget_s=600, device_total_bytes=card_bytes, seconds=540.0,
                  sections=sections, skipped_sections=[], facts={}, date=date)
    path = tool.report_paths(results_dir, card)[0]
    return write_json(path, report)


def table_of(page_text, marker):
    """(header, rows as dicts by header, the note under the table) of the generated table whose
    marker is ``<!-- table: marker -->``."""
    block = re.search(rf'<!-- table: {re.escape(marker)} -->\n(.*?)<!-- end table -->', page_text,
                      re.S).group(1)
    lines = block.splitlines()
    cells = [[cell.strip() for cell in line.strip('|').split(' | ')] for line in lines
             if line.startswith('|') and not line.startswith('|---')]
    header = cells[0]
    return header, [dict(zip(header, row)) for row in cells[1:]], lines[-1]


def row_of(rows, recipe):
    return next(row for row in rows if row['recipe'] in (f'`{recipe}`', f'`configs/{recipe}.py`'))


def measured_column(header, card, precision):
    """The header of the measured column of ``precision`` on ``card``."""
    found = [name for name in header if f'measured on {card}' in name
             and name.startswith(PRECISION_LABELS[precision])]
    assert len(found) == 1, (header, card, precision)
    return found[0]


def expected_memory_cell(figures):
    """A run's figures as the tables give them: GiB allocated / reserved, the allocated peak over
    the simulated one."""
    allocated, reserved = figures['peak_allocated_bytes'], figures['peak_reserved_bytes']
    return (f'{allocated / 2 ** 30:.2f} / {reserved / 2 ** 30:.2f}, '
            f"{figures['allocated_vs_simulated']:.2f}x")


def test_a_gpu_report_puts_its_figures_beside_the_estimates_in_their_rows(gpu_check_tool,
                                                                          results):
    tables = docs_tables_reading(results)
    estimated_only = rendered_pages(tables)
    path = write_report(gpu_check_tool, results, MEASURED_RUNS)
    with open(path) as f:
        figures = gc.measured_recipe_figures(json.load(f))
    assert set(figures) == set(MEASURED_RUNS)
    pages = rendered_pages(tables)
    report_file = osp.basename(path)
    for page, marker in MEMORY_TABLES:
        header, rows, note = table_of(pages[page], marker)
        before_header, before_rows, _ = table_of(estimated_only[page], marker)
        precisions = ['amp'] if marker == 'train_memory amp' else ['fp32', 'amp']
        for precision in precisions:
            column = measured_column(header, H100, precision)
            for row in rows:
                recipe = row['recipe'].strip('`').replace('configs/', '').replace('.py', '')
                measured = figures.get((recipe, precision))
                assert row[column] == (expected_memory_cell(measured) if measured else '-'), \
                    (page, marker, recipe, precision)
        # every estimate stays in its row and column
        for before, after in zip(before_rows, rows):
            assert {name: after[name] for name in before_header} == before
        assert H100 in note and f'[{report_file}](' in note, (page, marker)
        assert 'no GPU run' not in note
    header, rows, note = table_of(pages['docs/recipes.md'], 'gpu_hours')
    steps = next(name for name in header if name.startswith(f'step on {H100}'))
    hours = next(name for name in header if name.startswith(f'GPU-hours on {H100}'))
    for recipe in ('maskrcnn_coatnet0_ms-3x_coco', 'upernet_coatnet1_ade20k'):
        fp32, amp = figures[(recipe, 'fp32')], figures.get((recipe, 'amp'))
        assert row_of(rows, recipe)[steps] == (
            f"{fp32['step_seconds']:.3g} / " + (f"{amp['step_seconds']:.3g}" if amp else '-'))
        assert row_of(rows, recipe)[hours] == (
            f"{fp32['gpu_hours']:.0f} / " + (f"{amp['gpu_hours']:.0f}" if amp else '-'))
    assert row_of(rows, 'dino-4scale_coatnet2_12e_coco')[hours] == \
        f"- / {figures[('dino-4scale_coatnet2_12e_coco', 'amp')]['gpu_hours']:.0f}"
    assert row_of(rows, 'cascade-maskrcnn_coatnet0_ms-3x_coco')[hours] == '-'
    assert all(row[steps] == '-' for row in rows if 'for calibration' in row['recipe'])
    assert H100 in note and f'[{report_file}](' in note and 'no GPU run exists' not in note
    # pages without those tables do not change
    assert {page for page in pages if pages[page] != estimated_only[page]} == {
        'README.md', 'docs/recipes.md', 'docs/memory.md'}


def test_a_cpu_report_changes_no_table(gpu_check_tool, results):
    tables = docs_tables_reading(results)
    estimated_only = rendered_pages(tables)
    assert 'Estimated by simulation, no GPU run' in estimated_only['README.md']
    write_report(gpu_check_tool, results, MEASURED_RUNS, device='cpu', card='cpu')
    assert rendered_pages(tables) == estimated_only


def test_one_column_set_per_card_and_the_newest_report_of_a_card(gpu_check_tool, results):
    """Two cards: a column set each, in the order of their names; two reports of one card (copied
    under another name): the newer one's figures."""
    a100 = 'NVIDIA A100-SXM4-40GB'
    recipe = 'maskrcnn_coatnet0_ms-3x_coco'
    older = write_report(gpu_check_tool, results, {(recipe, 'fp32'): 0.7}, date='2026-12-01')
    shutil.move(older, osp.join(results, 'gpu_check_h100-first-run.json'))
    newer = write_report(gpu_check_tool, results, {(recipe, 'fp32'): 0.9}, date='2026-12-09')
    write_report(gpu_check_tool, results, {(recipe, 'fp32'): 1.1}, card=a100)
    tables = docs_tables_reading(results)
    lines = tables.recipes()
    header, rows, note = table_of('<!-- table: recipes -->\n' + '\n'.join(lines)
                                  + '\n<!-- end table -->\n', 'recipes')
    float32 = [name for name in header if name.startswith('float32 measured on')]
    assert float32 == [measured_column(header, card, 'fp32') for card in (a100, H100)]
    with open(newer) as f:
        newest = gc.measured_recipe_figures(json.load(f))[(recipe, 'fp32')]
    assert row_of(rows, recipe)[float32[1]] == expected_memory_cell(newest)
    assert 'gpu_check_h100-first-run.json' not in note and osp.basename(newer) in note
    assert 'One column set per card; of several reports of one card, the newest.' in note

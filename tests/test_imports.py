"""Rooms import downward only (models <- checkpoint <- engine <- utils, deployment; utils <-
analysis), the library never exits, and no module imports itself through others."""
import ast
import glob
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def module_name(path):
    rel = osp.relpath(path, ROOT)[:-len('.py')].replace(osp.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def project_imports(path):
    """The mmcoatnet modules a file imports, at any level of the file (lazy imports included)."""
    name = module_name(path)
    package = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            candidates = [f'{base}.{alias.name}' for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c.startswith('mmcoatnet') and c in MODULES}
    return found


FILES = sorted(glob.glob(osp.join(ROOT, 'mmcoatnet', '**', '*.py'), recursive=True))
MODULES = {module_name(p) for p in FILES}
FILE_OF = {module_name(p): p for p in FILES}
GRAPH = {module_name(p): project_imports(p) - {module_name(p)} for p in FILES}


# The rooms, from the bottom: a module imports only from its own room and the rooms below it.
# torch_compat, the torch releases' differences, is the ground every room stands on; mm_compat, the
# OpenMMLab distributions' (OpenMMLab's own or OneDL's fork), lies beside it. Neither imports the
# other.
# utils/ and deployment/ share a floor and do not import each other. analysis/, what the tools
# measure with, stands on utils/ (a synthetic batch refuses a config with the tools' ToolError) and
# on the model (the simulation sets its attention's kernels); it does not import deployment/.
ROOMS = {'torch_compat': -1, 'mm_compat': -1, 'models': 0, 'checkpoint': 1, 'engine': 2,
         'utils': 3, 'deployment': 3, 'analysis': 4, 'package': 5}


def room(module):
    parts = module.split('.')
    if len(parts) == 1 or parts[1] == 'version':
        return 'package'
    if parts[1] in ('checkpoint', 'safe_load'):  # the adapter and the safe reading it uses
        return 'checkpoint'
    return parts[1]


def test_every_module_sits_in_a_known_room():
    assert {room(m) for m in GRAPH} <= set(ROOMS)


def test_rooms_import_only_their_own_and_the_rooms_below():
    upward = {f'{m} -> {d}' for m, deps in GRAPH.items() for d in deps
              if room(d) != room(m) and ROOMS[room(d)] >= ROOMS[room(m)]}
    assert not upward


def test_the_runtime_rooms_never_import_tool_plumbing_measurement_or_deployment():
    runtime = [m for m in GRAPH if room(m) in ('models', 'checkpoint', 'engine')]
    assert runtime
    assert not {f'{m} -> {d}' for m in runtime for d in GRAPH[m]
                if room(d) in ('utils', 'analysis', 'deployment')}


def test_the_measuring_wing_does_not_import_deployment():
    measuring = [m for m in GRAPH if room(m) == 'analysis']
    assert measuring
    assert not {f'{m} -> {d}' for m in measuring for d in GRAPH[m] if room(d) == 'deployment'}


def test_no_module_imports_itself_through_others():
    packages = {m for m in GRAPH if osp.basename(FILE_OF[m]) == '__init__.py'}
    modules = {m: {d for d in deps if d not in packages} for m, deps in GRAPH.items()
               if m not in packages}
    state = {}

    def visit(module, trail):
        if state.get(module) == 'done':
            return
        assert state.get(module) != 'open', f'import cycle: {" -> ".join(trail + [module])}'
        state[module] = 'open'
        for dep in modules[module]:
            visit(dep, trail + [module])
        state[module] = 'done'

    for module in modules:
        visit(module, [])


def test_the_backbone_and_its_checkpoint_adapter_are_tied_by_an_import():
    """The adapter imports the backbone (the initializer name it registers under, the
    architectures it compares with); the backbone never reaches back."""
    assert 'mmcoatnet.models.backbone' in GRAPH['mmcoatnet.checkpoint']
    assert not any(room(d) == 'checkpoint' for d in GRAPH['mmcoatnet.models.backbone'])


def test_the_kernels_sit_below_the_attention_and_the_attention_below_the_blocks():
    """models/: backbone -> blocks -> attention -> kernels -> rel_pos / windows."""
    floors = ['backbone', 'blocks', 'attention', 'kernels', 'rel_pos']

    def floor(module):
        part = module.split('.')[2] if module.count('.') >= 2 else ''
        return floors.index(part) if part in floors else None

    upward = {f'{m} -> {d}' for m, deps in GRAPH.items() for d in deps
              if floor(m) is not None and floor(d) is not None and floor(d) < floor(m)}
    assert not upward


def test_the_library_never_exits_or_changes_sys_path():
    """Only tools/ turn errors into exit codes, and only they set up where things import from."""
    found = []
    for path in FILES:
        for node in ast.walk(ast.parse(open(path).read())):
            name = getattr(node, 'id', None) or getattr(node, 'attr', None)
            if name in ('SystemExit', 'exit') and not isinstance(node, ast.Attribute) or \
                    isinstance(node, ast.Attribute) and node.attr in ('exit', 'path') and \
                    getattr(node.value, 'id', None) == 'sys':
                found.append(f'{osp.relpath(path, ROOT)}:{node.lineno}')
    assert not found

"""Rooms import downward only: models/ never imports the package above it, and no cycles."""
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
GRAPH = {module_name(p): project_imports(p) - {module_name(p)} for p in FILES}


def test_models_never_import_the_package_above():
    upward = {m: sorted(i for i in deps if not i.startswith('mmcoatnet.models'))
              for m, deps in GRAPH.items() if m.startswith('mmcoatnet.models')}
    assert not {m: d for m, d in upward.items() if d}


def test_no_module_imports_itself_through_others():
    modules = {m: {d for d in deps if d in GRAPH and not d.endswith(('mmcoatnet', 'models'))}
               for m, deps in GRAPH.items() if not m.endswith(('mmcoatnet', 'models'))}
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


def test_the_checkpoint_adapter_does_not_import_the_backbone():
    assert 'mmcoatnet.models.backbone' not in GRAPH['mmcoatnet.checkpoint']
    assert 'mmcoatnet.models' not in GRAPH['mmcoatnet.checkpoint']

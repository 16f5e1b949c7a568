"""pyproject.toml is the one source of the package's metadata: requirements.txt repeats its
dependencies for `pip install -r`, setup.py only hands over to it, and the dependencies are what the
package imports."""
import ast
import sys
from pathlib import Path

import tomllib  # Python >= 3.11, as the tests run (the package itself: requires-python)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())
PROJECT = PYPROJECT['project']
# the import names of distributions whose names differ
DISTRIBUTIONS = {'mmseg': 'mmsegmentation'}
# imported by the deployment code, neither a dependency nor an extra: tools/install.sh installs it
# into a directory of its own (its protobuf pin conflicts with onnx's)
NOT_DECLARED = {'mmdeploy'}


def ranges(lines):
    """{distribution: specifier set} of requirement lines."""
    requirements = [Requirement(line) for line in lines]
    assert all(not r.marker and not r.extras and not r.url for r in requirements), requirements
    return {canonicalize_name(r.name): r.specifier for r in requirements}


def test_requirements_txt_holds_pyprojects_dependencies():
    lines = [line.split('#')[0].strip()
             for line in (ROOT / 'requirements.txt').read_text().splitlines()]
    lines = [line for line in lines if line]
    assert len(lines) == len(set(lines))
    assert ranges(lines) == ranges(PROJECT['dependencies'])


def test_setup_py_takes_everything_from_pyproject():
    calls = [node for node in ast.walk(ast.parse((ROOT / 'setup.py').read_text()))
             if isinstance(node, ast.Call)]
    assert len(calls) == 1 and not calls[0].args and not calls[0].keywords


def third_party_imports():
    """The top-level modules the package imports, anywhere in it, beside the standard library."""
    names = set()
    for path in (ROOT / 'mmcoatnet').rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split('.')[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split('.')[0])
    return {name for name in names - set(sys.stdlib_module_names) if name != 'mmcoatnet'}


def test_the_dependencies_are_what_the_package_imports():
    imported = {canonicalize_name(DISTRIBUTIONS.get(name, name))
                for name in third_party_imports() - NOT_DECLARED}
    dependencies = set(ranges(PROJECT['dependencies']))
    extras = {canonicalize_name(Requirement(line).name)
              for lines in PROJECT['optional-dependencies'].values() for line in lines}
    assert dependencies <= imported, 'depends on what it does not import'
    assert imported <= dependencies | extras, 'imports what is neither a dependency nor an extra'


def test_ruff_lints_for_the_oldest_python_the_package_claims():
    oldest = PROJECT['requires-python']
    assert oldest.startswith('>=')
    major, minor = oldest[2:].split('.')
    assert PYPROJECT['tool']['ruff']['target-version'] == f'py{major}{minor}'
    assert 'FA102' in PYPROJECT['tool']['ruff']['lint']['select']  # annotations evaluated at import

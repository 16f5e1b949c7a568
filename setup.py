# For `pip install -v -e .` and `python setup.py develop`, as OpenMMLab's projects install:
# setuptools reads everything from pyproject.toml, the one place of the metadata and dependencies.
from setuptools import setup

setup()

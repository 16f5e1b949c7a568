from setuptools import find_packages, setup

with open('requirements.txt') as f:
    install_requires = [line.strip() for line in f if line.strip() and not line.startswith('#')]

setup(
    name='mmcoatnet',
    version='0.1.0',
    description='CoAtNet backbone for OpenMMLab detection and segmentation',
    packages=find_packages(include=['mmcoatnet', 'mmcoatnet.*']),
    python_requires='>=3.9',
    install_requires=install_requires,
    extras_require={'det': ['mmdet==3.3.0'], 'seg': ['mmsegmentation==1.2.2'],
                    'deploy': ['onnx==1.23.2', 'onnxruntime==1.31.1']},
)

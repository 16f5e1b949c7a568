# CoAtNet-3 on ImageNet-1K at 224, the paper's recipe (./_base_/coatnet_in1k-224.py), 8 GPUs x 128.
# Paper: 84.5 top-1 (Table 4).
_base_ = ['./_base_/coatnet_in1k-224.py']
model = dict(
    backbone=dict(arch='coatnet-3', drop_path_rate=0.7),  # Table 10: 0.2 / 0.3 / 0.5 / 0.7 for 0-3
    head=dict(in_channels=1536))  # S4 width

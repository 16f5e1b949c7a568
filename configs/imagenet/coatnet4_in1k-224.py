# CoAtNet-4 on ImageNet-1K at 224, the paper's recipe (./_base_/coatnet_in1k-224.py), 8 GPUs x 128.
# The paper trains CoAtNet-4 on ImageNet-21K only: Table 10 has no ImageNet-1K stochastic depth
# for it, so 0.7, the largest ImageNet-1K one (CoAtNet-3's) and CoAtNet-4's own for ImageNet-21K.
_base_ = ['./_base_/coatnet_in1k-224.py']
model = dict(
    backbone=dict(arch='coatnet-4', drop_path_rate=0.7),
    head=dict(in_channels=1536))  # S4 width

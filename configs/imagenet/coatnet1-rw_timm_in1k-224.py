# timm's coatnet_1_rw_224.sw_in1k, converted with its head:
#     python tools/model_converters/timm2mmcoatnet.py model.safetensors \
#         checkpoints/coatnet_1_rw_224.sw_in1k_cls.pth --keep-head
# evaluated on ImageNet val at 224: timm reports 83.6 top-1.
_base_ = ['./_base_/coatnet-rw_timm_in1k-224.py']
load_from = 'checkpoints/coatnet_1_rw_224.sw_in1k_cls.pth'
model = dict(backbone=dict(arch='coatnet-1-rw'), head=dict(in_channels=768))  # S4 width

# timm's coatnet_2_rw_224.sw_in12k_ft_in1k (pre-trained on ImageNet-12k, fine-tuned on ImageNet-1k),
# converted with its head:
#     python tools/model_converters/timm2mmcoatnet.py model.safetensors \
#         checkpoints/coatnet_2_rw_224.sw_in12k_ft_in1k_cls.pth --keep-head
# evaluated on ImageNet val at 224: timm reports 86.6 top-1.
_base_ = ['./_base_/coatnet-rw_timm_in1k-224.py']
load_from = 'checkpoints/coatnet_2_rw_224.sw_in12k_ft_in1k_cls.pth'
model = dict(backbone=dict(arch='coatnet-2-rw'), head=dict(in_channels=1024))  # S4 width

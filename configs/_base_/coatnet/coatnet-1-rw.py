# CoAtNet-1 as timm's coatnet-1-rw architecture, initialised from timm's ImageNet weights
# coatnet_1_rw_224.sw_in1k: model.safetensors of the Hugging Face repository
# timm/coatnet_1_rw_224.sw_in1k, converted once:
#   hf download timm/coatnet_1_rw_224.sw_in1k model.safetensors \
#       --local-dir downloads/coatnet_1_rw_224.sw_in1k
#   python tools/model_converters/timm2mmcoatnet.py \
#       downloads/coatnet_1_rw_224.sw_in1k/model.safetensors \
#       checkpoints/coatnet_1_rw_224.sw_in1k.pth
# tools/train.py prints these commands when the file is missing. The download also loads
# as it is (converted on load): init_cfg.checkpoint='downloads/.../model.safetensors'.
# What a recipe takes for its size, beside a protocol base (../protocols/, which holds common.py):
# shared by the detection and segmentation recipes, so the widths are written once.
coatnet_channels = [96, 192, 384, 768]  # S1-S4
coatnet_s3_channels = coatnet_channels[2]  # for heads that read one stage
coatnet_s2_to_s4_channels = coatnet_channels[1:]  # for 4-scale DINO's neck (strides 8-32)
coatnet_decay_steps = 25  # of layer-wise lr decay, stem to heads: the stem and 24 blocks (2+6+14+2)
coatnet_pretrained = 'checkpoints/coatnet_1_rw_224.sw_in1k.pth'
coatnet_backbone = dict(
    arch='coatnet-1-rw', drop_path_rate=0.3, init_cfg=dict(checkpoint=coatnet_pretrained))

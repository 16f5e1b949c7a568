# The backbone of the toy configs (CPU demo): a small architecture from the table, random
# initialisation. Shared by the toy detection and segmentation configs.
toy_arch = 'coatnet-pico'
toy_channels = [32, 64, 128, 256]  # S1-S4 of coatnet-pico
toy_s3_channels = 128
toy_s2_to_s4_channels = toy_channels[1:]  # for 4-scale DINO's neck (strides 8-32)
toy_backbone = dict(arch=toy_arch, drop_path_rate=0.0, init_cfg=None)

# The backbone of the toy configs (CPU demo): a small architecture from the table, random
# initialisation. Shared by the toy detection and segmentation configs.
toy_arch = 'coatnet-pico'
toy_channels = [32, 64, 128, 256]  # S1-S4 of coatnet-pico
toy_s3_channels = 128
toy_backbone = dict(arch=toy_arch, drop_path_rate=0.0, init_cfg=None)

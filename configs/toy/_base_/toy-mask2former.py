# The shrunk Mask2Former head of the toy Mask2Formers (ADE20K's mmseg head and COCO instances'
# mmdet head): the recipes' MSDeformAttnPixelDecoder and transformer decoder, narrower, with fewer
# layers. Shared by configs/toy/mask2former_coatnet-pico_toy*.py.
toy_mask2former_width = 64  # the recipe's 256: pixel decoder, queries and masks
toy_mask2former_ffn_channels = 256  # the recipe's 1024 (pixel decoder), 2048 (transformer decoder)
toy_mask2former_pixel_decoder = dict(
    encoder=dict(
        num_layers=1,  # the recipe's 6
        layer_cfg=dict(self_attn_cfg=dict(embed_dims=toy_mask2former_width),
                       ffn_cfg=dict(embed_dims=toy_mask2former_width,
                                    feedforward_channels=toy_mask2former_ffn_channels))),
    positional_encoding=dict(num_feats=toy_mask2former_width // 2))
toy_mask2former_positional_encoding = dict(num_feats=toy_mask2former_width // 2)
toy_mask2former_transformer_decoder = dict(
    num_layers=3,  # the recipe's 9: one round over the 3 levels
    layer_cfg=dict(self_attn_cfg=dict(embed_dims=toy_mask2former_width),
                   cross_attn_cfg=dict(embed_dims=toy_mask2former_width),
                   ffn_cfg=dict(embed_dims=toy_mask2former_width,
                                feedforward_channels=toy_mask2former_ffn_channels)))

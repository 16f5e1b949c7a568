# Read before a base named `mmseg::...` (configs/_base_/protocols/upernet_ade20k.py lists it
# first). OneDL's fork of mmengine (onedl-mmengine 0.10.12) looks `mmseg::` configs up under the
# distribution name mmsegmentation, which the fork does not install (its own is
# onedl-mmsegmentation), and stops with "mmsegmentation is not installed". Reading this file first
# has mmcoatnet map the scope to its module (mmcoatnet.mm_compat.fix_config_scopes) under any tool
# that loads the config: ours, the fork's tools/train.py and tools/test.py, `mim train`,
# mmseg.apis.init_model. On OpenMMLab's stack it changes nothing. A call, not an import statement:
# mmengine takes a config that imports a module for a "lazy import" config, which cannot have a
# _base_ list. Names with two leading underscores are not kept in the config.
__onedl_scopes__ = __import__('mmcoatnet.mm_compat', fromlist=['_']).fix_config_scopes()

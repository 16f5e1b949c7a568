"""Deployment: ONNX export at any input size (``onnx_export``) and the whole detector through
mmdeploy (``mmdeploy_compat``). Imported by the tools under tools/deployment/, never by the
model."""

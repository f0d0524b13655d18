"""nametool's export stage: a checkpoint becomes one deployable ``.onnx`` file.

Import ``nametool.export.onnx_export`` for the exporter (it needs torch and onnx).
"""

MIN_OPSET = 18  # also the default: the lowest opset torch's current (dynamo) exporter writes

"""The Open Inference Protocol on the wire: metadata models and the tensor codec."""

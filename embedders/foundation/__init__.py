"""Foundation-model adapters (one module per family); importing this package registers them.

Registry keys: ``rad-dino``, ``rad-dino-tokens``, ``biomedclip``, ``medimageinsight``, ``medsiglip``,
``medgemma-vision``, ``chexagent``, ``chexagent-pooled``, ``cxr-foundation``, ``cxr-foundation-contrastive``
(see docs/models.md for weights, licences, output shapes and preprocessing).
"""
from embedders.foundation import biomedclip, chexagent, cxr_foundation, medimageinsight, rad_dino, siglip

__all__ = ["biomedclip", "chexagent", "cxr_foundation", "medimageinsight", "rad_dino", "siglip"]

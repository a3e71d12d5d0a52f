"""BLIP (Li et al., 2022) behind the benchmark's protocol, from the official `model_base.pth`.

BLIP's text encoder is one 12-layer BERT whose cross-attention sub-layers are skipped in text mode, so the
ITC path is a plain BERT (`text_encoder.*`, no token-type embeddings; the word embedding holds BLIP's two
extra tokens, [DEC] and [ENC], which ITC never uses). Cross-attention, the text decoder, the ITM head, the
momentum encoders and the queues are reported as unused when the file loads.
"""

from vlm_rationality.models.adapter import MODEL_ADAPTERS
from vlm_rationality.models.bert_vit_adapter import BertViTAdapter


@MODEL_ADAPTERS.register("blip")
class BLIP(BertViTAdapter):
    family = "blip"
    text_prefix = "text_encoder."
    token_types = False

"""ALBEF (Li et al., 2021) behind the benchmark's protocol, from the official `ALBEF.pth`.

ALBEF's BERT runs its first 6 layers on text alone and fuses the image in layers 6-11 (`fusion_layer`); the ITC
logit reads only the text-only half. The official file keeps BERT under `text_encoder.bert.` (it was trained as
`BertForMaskedLM`), with token-type embeddings. Fusion layers, the MLM and ITM heads, the momentum encoders
and the queues stay in the file and are reported as unused when it loads.
"""

from vlm_rationality.models.adapter import MODEL_ADAPTERS
from vlm_rationality.models.bert_vit_adapter import BertViTAdapter


@MODEL_ADAPTERS.register("albef")
class ALBEF(BertViTAdapter):
    family = "albef"
    text_prefix = "text_encoder.bert."
    token_types = True

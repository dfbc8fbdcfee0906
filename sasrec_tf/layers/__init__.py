"""Keras layers of SASRec: positional embedding, feed-forward network, frequency filter,
time-variant filter, WEARec's wavelet filter, causal self-attention block, encoder stack.

Shapes: ``B`` batch, ``T`` sequence width (``T <= max_len``), ``d`` hidden units. Sequences are
left-padded; ``padding_mask`` is ``True`` at real items.

Every layer checks each of its ``__init__`` arguments (a ``TypeError`` or ``ValueError`` naming
the argument and the value) and returns exactly those arguments from ``get_config``, so
``type(layer).from_config(layer.get_config())`` rebuilds it. The layers are registered with Keras
as ``sasrec_tf>ClassName`` whichever module defines them.

Modules: :mod:`~sasrec_tf.layers.positional`, :mod:`~sasrec_tf.layers.feed_forward`,
:mod:`~sasrec_tf.layers.frequency`, :mod:`~sasrec_tf.layers.time_variant`,
:mod:`~sasrec_tf.layers.wavelet`,
:mod:`~sasrec_tf.layers.self_attention`,
:mod:`~sasrec_tf.layers.encoder`, :mod:`~sasrec_tf.layers.item_representation`; import the names from ``sasrec_tf.layers``.
"""

from sasrec_tf.layers.encoder import SASRecEncoder
from sasrec_tf.layers.feed_forward import PointWiseFeedForward
from sasrec_tf.layers.item_representation import ItemRepresentation
from sasrec_tf.layers.frequency import CausalFrequencyFilter, lowpass_kernel_matrix
from sasrec_tf.layers.positional import PositionalEmbedding
from sasrec_tf.layers.self_attention import CausalSelfAttentionBlock, causal_attention_mask
from sasrec_tf.layers.time_variant import CausalTimeVariantFilter
from sasrec_tf.layers.wavelet import CausalWaveletFilter, frequency_response_basis, haar_average_matrices

__all__ = [
    "CausalFrequencyFilter",
    "CausalSelfAttentionBlock",
    "CausalTimeVariantFilter",
    "CausalWaveletFilter",
    "ItemRepresentation",
    "PointWiseFeedForward",
    "PositionalEmbedding",
    "SASRecEncoder",
    "causal_attention_mask",
    "frequency_response_basis",
    "haar_average_matrices",
    "lowpass_kernel_matrix",
]

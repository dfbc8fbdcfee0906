"""``ItemRepresentation``: an item's vector from its id embedding and its attributes (item features).

The attribute table (each item's attribute ids, padded with 0), the per-item id mask (1 for
items trained on, 0 for items that never occurred in training: cold) and, with a frequency-aware
id dropout, the items' training counts are non-trainable weights,
so ``model.keras`` carries them and a cold item is represented by its features alone, never by an
untrained id row. Every operation is row-wise, so ``call(table, all ids)`` (the prediction
layer's matrix) and ``call(table[ids], ids)`` (the input) agree.

TFRS 0.7.7's feature-multiplexing ``UnifiedEmbedding`` was checked and not used: it hashes named
fields of fixed multiplicity into shared tables on the TPU-embedding backend (a separate TPU
optimizer, hash collisions); here an item has a variable-length bag of ids from one attribute
vocabulary, which one ``Embedding`` with a masked mean does exactly.
"""

from __future__ import annotations

import tensorflow as tf

from sasrec_tf._compat import keras
from sasrec_tf.choices import FEATURE_FUSIONS
from sasrec_tf.layers._arguments import KERAS_PACKAGE, check_choice, check_int, check_rate

__all__ = ["ItemRepresentation"]


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ItemRepresentation(keras.layers.Layer):
    """Fuses id vectors with the mean of the items' attribute embeddings.

    Args:
      num_items: ``N``; the tables have ``N + 1`` rows (row 0: padding).
      num_attributes: ``A``; attribute ids ``1..A``, 0 is padding.
      max_attributes: the attribute table's width (the most attributes one item has).
      hidden_units: ``d``.
      fusion: ``"sum"`` (``m·e + a``), ``"concat"`` (``W [m·e; a] + b``) or ``"gate"``
        (``g·m·e + (1 - g)·a`` with ``g = sigmoid(W [m·e; a] + b)``), where ``e`` is the id
        vector, ``m`` the item's id mask and ``a`` the mean of its attribute embeddings (0 for
        an item without attributes).
      id_dropout_rate: in training, the probability ``r`` that a lookup drops an item's id part
        (DropoutNet, Volkovs et al. 2017), so that items are also scored from their attributes
        alone, as cold items are.
      id_dropout_count: ``c``; 0 drops every item's id part with ``r``. With ``c > 0`` the rate is
        frequency-aware: item ``i``, occurring ``n_i`` times in the training sequences, is
        dropped with ``p_i = r * max(0, 1 - n_i / c)``: items seen ``c`` times or more keep their id
        (their rows are well trained: dropping them only costs warm quality), rare ones are
        dropped almost at ``r`` (they learn to rely on their attributes, as cold items must).
        The counts ``n_i`` (:meth:`set_features`' ``target_counts``: the training split's, those of
        the popularity baseline, 0 for held-out cold items; 0 until set) are a weight.
      cold_tower: ``False``: an item without its id part (cold, or id-dropped in training) is the
        fusion of a zero id vector with ``a``. ``True``: it is ``c``, the mean of the item's
        attributes in a second attribute embedding (the cold tower), and warm items keep the
        whole fusion. With one shared ``a``, the attributes must serve both as a warm item's
        correction to its id vector and as a cold item's whole vector, and the id dropout trades one
        for the other; the tower learns the cold vector apart, from the same id-dropped lookups,
        in the same softmax as the warm items it competes with.
      embeddings_initializer, embeddings_regularizer: of the attribute embedding (the item
        embedding's).

    Call arguments:
      id_vectors: ``[..., d]`` the id-embedding rows of ``item_ids``.
      item_ids: ``[...]`` int dense item ids.
      training: whether ``id_dropout_rate`` applies.

    Returns:
      ``[..., d]`` item vectors.
    """

    def __init__(self, num_items, num_attributes, max_attributes, hidden_units, fusion="sum", id_dropout_rate=0.0,
                 id_dropout_count=0, cold_tower=False, embeddings_initializer="uniform", embeddings_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.num_items = check_int(name, "num_items", num_items)
        self.num_attributes = check_int(name, "num_attributes", num_attributes)
        self.max_attributes = check_int(name, "max_attributes", max_attributes)
        self.hidden_units = check_int(name, "hidden_units", hidden_units)
        self.fusion = check_choice(name, "fusion", fusion, FEATURE_FUSIONS[1:])
        self.id_dropout_rate = check_rate(name, "id_dropout_rate", id_dropout_rate)
        self.id_dropout_count = check_int(name, "id_dropout_count", id_dropout_count, minimum=0)
        if not isinstance(cold_tower, bool):
            raise TypeError(f"{name}: cold_tower must be a bool, got {cold_tower!r}")
        self.cold_tower = cold_tower
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.attribute_embedding = keras.layers.Embedding(
            self.num_attributes + 1, self.hidden_units, embeddings_initializer=self.embeddings_initializer,
            embeddings_regularizer=self.embeddings_regularizer, name="attribute_embedding")
        self.projection = (keras.layers.Dense(self.hidden_units, name="fusion_projection")
                           if self.fusion == "concat" else None)
        self.gate = (keras.layers.Dense(self.hidden_units, activation="sigmoid", name="fusion_gate")
                     if self.fusion == "gate" else None)

    def build(self, input_shape=None):
        # int64: the integer type TensorFlow gathers on GPUs (int32 tensors live in host memory).
        self.attribute_table = self.add_weight(
            name="attribute_table", shape=(self.num_items + 1, self.max_attributes), dtype=tf.int64,
            initializer="zeros", trainable=False)
        self.id_mask = self.add_weight(name="id_mask", shape=(self.num_items + 1,), dtype=tf.float32,
                                       initializer="ones", trainable=False)
        # Only with a frequency-aware dropout: the other models' weights (and files) stay as they were.
        self.target_counts = (self.add_weight(name="target_counts", shape=(self.num_items + 1,), dtype=tf.float32,
                                              initializer="zeros", trainable=False)
                              if self.id_dropout_count else None)
        self.attribute_embedding.build((None,))
        # Only with the tower: the other models' weights (and files) stay as they were. A fresh
        # initialiser: one instance called twice would start both tables equal.
        self.cold_attribute_embeddings = (self.add_weight(
            name="cold_attribute_embeddings", shape=(self.num_attributes + 1, self.hidden_units),
            initializer=type(self.embeddings_initializer).from_config(self.embeddings_initializer.get_config()),
            regularizer=self.embeddings_regularizer, trainable=True)
            if self.cold_tower else None)
        for dense in (self.projection, self.gate):
            if dense is not None:
                dense.build((None, 2 * self.hidden_units))
        super().build(input_shape)

    def pooled_attributes(self, item_ids, cold=False):
        """``[..., d]``: the mean of each item's attribute embeddings (0 without attributes), in the
        fusion's attribute embedding or (``cold``) the cold tower's."""
        attributes = tf.gather(self.attribute_table, item_ids)
        present = tf.cast(attributes > 0, self.compute_dtype)[..., tf.newaxis]
        rows = (tf.gather(self.cold_attribute_embeddings, attributes) if cold
                else self.attribute_embedding(attributes))
        total = tf.reduce_sum(rows * present, axis=-2)
        return total / tf.maximum(tf.reduce_sum(present, axis=-2), 1.0)

    def id_drop_probability(self, item_ids):
        """The probability that a training lookup of ``item_ids`` drops their id part: the rate,
        or ``[...]`` per item with ``id_dropout_count`` (see the class doc)."""
        if not self.id_dropout_count:
            return self.id_dropout_rate
        counts = tf.gather(self.target_counts, item_ids)
        return self.id_dropout_rate * tf.maximum(0.0, 1.0 - counts / float(self.id_dropout_count))

    def call(self, id_vectors, item_ids, training=None):
        mask = tf.gather(self.id_mask, item_ids)
        if training and self.id_dropout_rate > 0:
            mask *= tf.cast(tf.random.uniform(tf.shape(mask)) >= self.id_drop_probability(item_ids), mask.dtype)
        pooled = self.pooled_attributes(item_ids)
        if not self.cold_tower:
            return self._fuse(id_vectors * mask[..., tf.newaxis], pooled)
        keep = mask[..., tf.newaxis]  # 0 or 1: which items are represented by the tower
        cold = self.pooled_attributes(item_ids, cold=True)
        return keep * self._fuse(id_vectors, pooled) + (1.0 - keep) * cold

    def _fuse(self, id_vectors, pooled):
        if self.fusion == "sum":
            return id_vectors + pooled
        both = tf.concat([id_vectors, pooled], axis=-1)
        if self.fusion == "concat":
            return self.projection(both)
        gate = self.gate(both)
        return gate * id_vectors + (1.0 - gate) * pooled

    def set_features(self, attribute_table, id_mask, target_counts=None) -> None:
        """Assign the attribute table (``[N + 1, <= max_attributes]`` ids; narrower is padded), the
        id mask (``[N + 1]``; padding's entry is set to 0) and, with ``id_dropout_count``, the
        items' training counts (``[N + 1]``; ``None`` keeps the counts held; ignored without it).

        Raises:
          ValueError: a table of the wrong shape, an attribute id out of range, negative counts.
        """
        if not self.built:
            self.build()
        counts = None
        if target_counts is not None and self.target_counts is not None:
            counts = tf.convert_to_tensor(target_counts, tf.float32)
            if counts.shape != (self.num_items + 1,):
                raise ValueError(f"the target counts must have shape ({self.num_items + 1},), got {tuple(counts.shape)}")
            if bool(tf.reduce_any(counts < 0)):
                raise ValueError("the target counts must be >= 0")
        table = tf.convert_to_tensor(attribute_table, tf.int64)
        width = int(table.shape[1])
        if table.shape[0] != self.num_items + 1 or width > self.max_attributes:
            raise ValueError(f"the attribute table must have shape ({self.num_items + 1}, <= {self.max_attributes}), "
                             f"got {tuple(table.shape)}")
        if width and int(tf.reduce_max(table)) > self.num_attributes:
            raise ValueError(f"attribute ids must be at most {self.num_attributes}")
        self.attribute_table.assign(tf.pad(table, [[0, 0], [0, self.max_attributes - width]]))
        mask = tf.convert_to_tensor(id_mask, tf.float32)
        if mask.shape != (self.num_items + 1,):
            raise ValueError(f"the id mask must have shape ({self.num_items + 1},), got {tuple(mask.shape)}")
        self.id_mask.assign(tf.tensor_scatter_nd_update(mask, [[0]], [0.0]))
        if counts is not None:
            self.target_counts.assign(counts)

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "num_attributes": self.num_attributes,
                "max_attributes": self.max_attributes, "hidden_units": self.hidden_units, "fusion": self.fusion,
                "id_dropout_rate": self.id_dropout_rate, "id_dropout_count": self.id_dropout_count,
                "cold_tower": self.cold_tower,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer)
                if self.embeddings_regularizer is not None else None}

"""SASRec as a Keras model: item embedding → causal self-attention encoder → r = F·Mᵀ."""

from __future__ import annotations

import math

import tensorflow as tf

from sasrec_tf import losses
from sasrec_tf._compat import keras
from sasrec_tf.config import SASRecConfig
from sasrec_tf.layers import SASRecEncoder


@keras.saving.register_keras_serializable(package="sasrec_tf")
class SASRec(keras.Model):
    """Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).

    ``model(item_ids)`` with ``item_ids`` int ``[B, T]`` (``T <= config.max_len``), left-padded
    with 0, returns the sequence representations ``F`` ``[B, T, d]``: row ``t`` is the query
    for the item following position ``t`` (zero at padding). With ``use_user_embedding`` the
    input is a dict ``{"item_ids": [B, T], "user_ids": [B]}`` and the user embedding is added to
    every position (the paper's explicit user variant). Items are scored as ``F · Mᵀ`` where
    ``M`` is the item embedding (shared with the input by default).

    ``fit`` expects batches ``{"item_ids", "positives" [B, T], "negatives" [B, T, K]}`` (plus
    ``"user_ids"``), as made by :func:`sasrec_tf.data.training_dataset`; the loss is the paper's
    binary cross-entropy on sampled negatives, masked at padding, plus the embeddings' L2 term.
    """

    def __init__(self, config: SASRecConfig, num_items: int, num_users: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = SASRecConfig.from_dict(config)
        if num_items < 2:
            raise ValueError(f"num_items must be >= 2 (negatives must differ from positives), got {num_items}")
        if config.use_user_embedding and num_users < 1:
            raise ValueError("use_user_embedding=True needs num_users >= 1")
        self.config = config
        self.num_items = int(num_items)
        self.num_users = int(num_users)
        d = config.hidden_units
        regularizer = keras.regularizers.l2(config.l2_emb) if config.l2_emb > 0 else None

        self.item_embedding = keras.layers.Embedding(
            self.num_items + 1, d, embeddings_regularizer=regularizer, name="item_embedding"
        )
        self.output_item_embedding = (
            None
            if config.share_item_embedding
            else keras.layers.Embedding(
                self.num_items + 1, d, embeddings_regularizer=regularizer, name="output_item_embedding"
            )
        )
        self.user_embedding = (
            keras.layers.Embedding(self.num_users + 1, d, embeddings_regularizer=regularizer, name="user_embedding")
            if config.use_user_embedding
            else None
        )
        self.encoder = SASRecEncoder(
            max_len=config.max_len,
            hidden_units=d,
            num_blocks=config.num_blocks,
            num_heads=config.num_heads,
            dropout_rate=config.dropout_rate,
            layer_norm=config.layer_norm,
            use_residual=config.use_residual,
            use_positional_embedding=config.use_positional_embedding,
            name="encoder",
        )
        self._embedding_scale = math.sqrt(d)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="pairwise_accuracy")

    # ----------------------------------------------------------------------------- properties
    @property
    def max_len(self) -> int:
        return self.config.max_len

    @property
    def uses_user_embedding(self) -> bool:
        return self.user_embedding is not None

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    # ----------------------------------------------------------------------------- forward
    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            item_ids = inputs["item_ids"]
            user_ids = inputs.get("user_ids")
        else:
            item_ids, user_ids = inputs, None
        if self.uses_user_embedding and user_ids is None:
            raise ValueError("This model uses a user embedding: call it with {'item_ids': ..., 'user_ids': ...}")
        return item_ids, user_ids

    def call(self, inputs, training=None, return_attention_scores=False):
        item_ids, user_ids = self._split_inputs(inputs)
        if not item_ids.dtype.is_integer:
            raise TypeError(f"item_ids must be an integer tensor, got {item_ids.dtype}")
        padding_mask = tf.not_equal(item_ids, 0)
        embedded = self.item_embedding(item_ids) * self._embedding_scale
        result = self.encoder(
            embedded, padding_mask, training=training, return_attention_scores=return_attention_scores
        )
        hidden, scores = result if return_attention_scores else (result, None)
        if self.user_embedding is not None:
            hidden = hidden + self.user_embedding(user_ids)[:, tf.newaxis, :] * tf.cast(
                padding_mask, hidden.dtype
            )[..., tf.newaxis]
        return (hidden, scores) if return_attention_scores else hidden

    def item_embeddings(self) -> tf.Tensor:
        """The prediction layer's item matrix ``M`` ``[num_items + 1, d]`` (row 0: padding)."""
        layer = self.output_item_embedding or self.item_embedding
        if not layer.built:
            layer.build((None,))
        return layer.embeddings

    def _output_embedding(self, item_ids):
        return (self.output_item_embedding or self.item_embedding)(item_ids)

    def query_embeddings(self, item_ids, user_ids=None) -> tf.Tensor:
        """Representation ``[B, d]`` at the last position: the query that scores the next item."""
        inputs = {"item_ids": item_ids, "user_ids": user_ids} if self.uses_user_embedding else item_ids
        return self(inputs, training=False)[:, -1, :]

    def score_items(self, representations, item_ids) -> tf.Tensor:
        """``r = F · M_i``: ``representations [..., d]`` against ``item_ids [..., K]`` → ``[..., K]``."""
        return tf.einsum("...d,...kd->...k", representations, self._output_embedding(item_ids))

    # ----------------------------------------------------------------------------- training
    def _forward_loss(self, data, training):
        inputs = {"item_ids": data["item_ids"]}
        if self.uses_user_embedding:
            inputs["user_ids"] = data["user_ids"]
        hidden = self(inputs, training=training)
        positives, negatives = data["positives"], data["negatives"]
        positive_logits = tf.reduce_sum(hidden * self._output_embedding(positives), axis=-1)
        negative_logits = self.score_items(hidden, negatives)
        mask = tf.not_equal(positives, 0)
        loss = losses.sampled_binary_crossentropy(positive_logits, negative_logits, mask)
        accuracy = losses.pairwise_accuracy(positive_logits, negative_logits, mask)
        return loss, accuracy

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, accuracy = self._forward_loss(data, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
        gradients = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        loss, accuracy = self._forward_loss(data, training=False)
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        return {m.name: m.result() for m in self.metrics}

    # ----------------------------------------------------------------------------- serialization
    def build(self, input_shape=None):
        """Create every weight with one integer dummy batch (Keras' default build feeds floats)."""
        if self.built:
            return
        item_ids = tf.ones((1, self.max_len), tf.int32)
        inputs = {"item_ids": item_ids, "user_ids": tf.ones((1,), tf.int32)} if self.uses_user_embedding else item_ids
        self.call(inputs, training=False)
        self.item_embeddings()
        self._build_input_shape = input_shape if input_shape is not None else (None, self.max_len)
        self.built = True

    def build_for(self) -> "SASRec":
        """Build the weights now (before ``load_weights`` or inspection) and return the model."""
        self.build()
        return self

    def get_config(self):
        return {"config": self.config.to_dict(), "num_items": self.num_items, "num_users": self.num_users}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(SASRecConfig.from_dict(config.pop("config")), **config)

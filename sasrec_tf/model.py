"""SASRec as a Keras model: item embedding → causal self-attention encoder → r = F·Mᵀ."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import tensorflow as tf

from sasrec_tf import losses, objectives
from sasrec_tf._compat import keras
from sasrec_tf.config import SASRecConfig
from sasrec_tf.item_frequency import ItemFrequency
from sasrec_tf.layers import ItemRepresentation, SASRecEncoder
from sasrec_tf.metrics import MRR, NDCG, HitRate
from sasrec_tf.ranking.rules import check_cold_score_offset


@keras.saving.register_keras_serializable(package="sasrec_tf")
class SASRec(keras.Model):
    """Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018).

    Item embedding → causal self-attention encoder (:class:`sasrec_tf.layers.SASRecEncoder`) →
    sequence representations ``F``; items are scored as ``r = F · Mᵀ`` where ``M`` is the item
    embedding (shared with the input by default). Every hyperparameter is a field of ``config``.

    Args:
      config: a :class:`~sasrec_tf.config.SASRecConfig` (or its ``to_dict()``, as in a saved
        model's config).
      num_items: the catalogue size ``N``: item ids are ``1..N``, 0 is padding. At least 2
        (a negative must differ from the positive).
      num_users: the number of users, ids ``1..num_users``; needed (``>= 1``) with
        ``config.use_user_embedding``, ignored otherwise.
      num_attributes, max_item_attributes: with ``config.feature_fusion`` other than ``"none"``,
        the attribute vocabulary's size ``A`` (ids ``1..A``) and the attribute table's width;
        the table itself is set with :meth:`set_item_features` (a weight: saved with the model).
      **kwargs: passed to ``keras.Model`` (e.g. ``name``).

    Call arguments:
      inputs: int ``item_ids`` ``[B, T]`` (``T <= config.max_len``), left-padded with 0; with
        ``use_user_embedding`` a dict ``{"item_ids": [B, T], "user_ids": [B]}`` whose user
        embedding is added to every real position (the paper's explicit user variant).
      training: Python boolean, whether dropout applies.
      return_attention_scores: also return each block's attention weights.

    Returns:
      The sequence representations ``F`` ``[B, T, d]``: row ``t`` is the query for the item
      following position ``t`` (zero at padding); with ``return_attention_scores``, the tuple
      ``(F, scores)``, ``scores`` one ``[B, heads, T, T]`` tensor per block.

    Training: ``fit`` expects batches ``{"item_ids", "positives" [B, T], "negatives" [B, T, K]}``
    (plus ``"user_ids"``, and ``"expected_targets" [B]``), as made by
    :func:`sasrec_tf.data.training_dataset`; the loss is ``config.loss`` (default: the paper's
    binary cross-entropy on sampled negatives; see :mod:`sasrec_tf.objectives`), masked at padding,
    summed over the batch's target positions and divided by ``sum(expected_targets)`` (without
    that key: averaged over the batch's own positions), plus the embeddings' L2 term. An
    objective that reads item frequencies (popularity negatives, log-q correction) gets the
    model's :attr:`item_frequency`, counted from the training targets or set with
    :meth:`set_item_counts`.

    Scoring: :meth:`query_embeddings` (the last position's representation), :meth:`score_items`
    and :meth:`item_embeddings` (``M``); ``compile(metrics=[sasrec_tf.metrics.NDCG(model), ...])``
    makes ``evaluate`` rank the whole catalogue (:meth:`test_step`).
    """

    # Outputs at real positions do not change when leading padding columns are added or removed
    # (positions count from the right, padding is masked): evaluation may cut batches to their
    # longest history.
    left_padding_invariant = True

    def __init__(self, config: SASRecConfig, num_items: int, num_users: int = 0, *, num_attributes: int = 0,
                 max_item_attributes: int = 0, **kwargs):
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
            self.num_items + 1, d, embeddings_initializer=_embedding_initializer(config.embedding_initializer),
            embeddings_regularizer=regularizer, name="item_embedding"
        )
        self.output_item_embedding = (
            None
            if config.share_item_embedding
            else keras.layers.Embedding(
                self.num_items + 1, d, embeddings_initializer=_embedding_initializer(config.embedding_initializer),
                embeddings_regularizer=regularizer, name="output_item_embedding"
            )
        )
        self.item_dropout = (keras.layers.Dropout(config.item_dropout_rate, name="item_dropout")
                             if config.item_dropout_rate > 0 else None)
        self._dropped_tables: dict[str, tf.Tensor] | None = None  # during one training forward pass
        self._training_lookups = False  # item features: whether lookups drop id parts (a training forward pass)
        self.user_embedding = (
            keras.layers.Embedding(self.num_users + 1, d, embeddings_regularizer=regularizer, name="user_embedding")
            if config.use_user_embedding
            else None
        )
        self.num_attributes = int(num_attributes)
        self.max_item_attributes = int(max_item_attributes)
        self.item_representation = None  # the id embedding alone (feature_fusion="none": the paper's model)
        if config.feature_cold_tower and config.feature_fusion == "none":
            raise ValueError("feature_cold_tower=true needs item features (feature_fusion sum, concat or gate)")
        if config.feature_fusion != "none":
            if self.num_attributes < 1 or self.max_item_attributes < 1:
                raise ValueError(f"feature_fusion={config.feature_fusion!r} needs item features "
                                 "(num_attributes and max_item_attributes >= 1; --item-features on the command line)")
            self.item_representation = ItemRepresentation(
                self.num_items, self.num_attributes, self.max_item_attributes, d, config.feature_fusion,
                id_dropout_rate=config.feature_id_dropout, id_dropout_count=config.feature_id_dropout_count,
                cold_tower=config.feature_cold_tower,
                embeddings_initializer=_embedding_initializer(config.embedding_initializer),
                embeddings_regularizer=regularizer, name="item_representation")
        self.encoder = SASRecEncoder(
            max_len=config.max_len,
            hidden_units=d,
            num_blocks=config.num_blocks,
            num_heads=config.num_heads,
            dropout_rate=config.dropout_rate,
            layer_norm=config.layer_norm,
            use_residual=config.use_residual,
            use_positional_embedding=config.use_positional_embedding,
            ffn_units=config.ffn_units,
            ffn_activation=config.ffn_activation,
            frequency_mixing=config.frequency_mixing,
            frequency_cutoff=config.frequency_cutoff,
            fused_attention=config.fused_attention,
            time_variant_mixing=config.time_variant_mixing,
            time_variant_taps=config.time_variant_taps,
            time_variant_bases=config.time_variant_bases,
            wavelet_mixing=config.wavelet_mixing,
            wavelet_frequency_weight=config.wavelet_frequency_weight,
            wavelet_heads=config.wavelet_heads,
            wavelet_levels=config.wavelet_levels,
            name="encoder",
        )
        self._embedding_scale = math.sqrt(d) if config.scale_item_embedding else 1.0
        self._init_objective(config)
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
        """The training trackers, then what ``compile(metrics=...)`` added (Keras resets all of
        them at the start of every epoch and ``evaluate``)."""
        compiled = getattr(self, "compiled_metrics", None)  # None before compile
        return [self.loss_tracker, self.accuracy_tracker, *(compiled.metrics if compiled is not None else ())]

    # ----------------------------------------------------------------------------- forward
    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            item_ids = inputs["item_ids"]
            user_ids = inputs.get("user_ids")
        else:
            item_ids, user_ids = inputs, None
        item_ids = tf.convert_to_tensor(item_ids)  # numpy arrays and lists too (call converts; query_embeddings not)
        if self.uses_user_embedding and user_ids is None:
            raise ValueError("This model uses a user embedding: call it with {'item_ids': ..., 'user_ids': ...}")
        return item_ids, user_ids

    def call(self, inputs, training=None, return_attention_scores=False):
        return self._encode(inputs, training=training, return_attention_scores=return_attention_scores)

    def _encode(self, inputs, training=None, return_attention_scores=False, last_only=False):
        item_ids, user_ids = self._split_inputs(inputs)
        if not item_ids.dtype.is_integer:
            raise TypeError(f"item_ids must be an integer tensor, got {item_ids.dtype}")
        padding_mask = tf.not_equal(item_ids, 0)
        embedded = self._lookup(self.item_embedding, item_ids) * self._embedding_scale
        result = self.encoder(
            embedded, padding_mask, training=training, return_attention_scores=return_attention_scores,
            last_only=last_only,
        )
        hidden, scores = result if return_attention_scores else (result, None)
        if last_only:
            padding_mask = padding_mask[:, -1:]
        if self.user_embedding is not None:
            hidden = hidden + self.user_embedding(user_ids)[:, tf.newaxis, :] * tf.cast(
                padding_mask, hidden.dtype
            )[..., tf.newaxis]
        return (hidden, scores) if return_attention_scores else hidden

    def item_embeddings(self) -> tf.Tensor:
        """The prediction layer's item matrix ``M`` ``[num_items + 1, d]`` (row 0: padding);
        inside a training step with ``item_dropout_rate`` > 0, that step's dropped-out matrix."""
        layer = self.output_item_embedding or self.item_embedding
        if not layer.built:
            layer.build((None,))
        table = self._dropped_tables[layer.name] if self._dropped_tables is not None else layer.embeddings
        if self.item_representation is not None:  # every item's fused vector (row-wise, as _lookup's)
            return self.item_representation(table, tf.range(self.num_items + 1), training=self._training_lookups)
        return table

    def item_score_bias(self, offset: float | None = None) -> tf.Tensor | None:
        """``[num_items + 1]`` float32 added to every item's score wherever items are ranked (the
        ranking kernel's ``item_bias``): ``-offset`` for each item without a trained id row (cold),
        0 for the others; None when nothing is added (no item features, or offset 0). Never part of
        the training loss.

        Args:
          offset: the cold items' score offset, finite and >= 0; None: ``feature_cold_score_offset``.

        Raises:
          ValueError: a negative or non-finite offset, or one > 0 for a model without item features.
        """
        offset = check_cold_score_offset(self.config.feature_cold_score_offset if offset is None else offset)
        if self.item_representation is None and offset > 0:
            raise ValueError("a cold-score offset lowers the scores of items served from their features: this "
                             "model uses no item features (feature_fusion='none')")
        if self.item_representation is None or offset == 0.0:
            return None
        self.build()
        cold = 1.0 - tf.convert_to_tensor(self.item_representation.id_mask)[1:]
        return tf.concat([tf.zeros([1]), tf.constant(-offset, tf.float32) * cold], axis=0)  # padding: 0

    def _output_embedding(self, item_ids):
        return self._lookup(self.output_item_embedding or self.item_embedding, item_ids)

    def _lookup(self, layer, item_ids):
        """Rows of an item table: the layer's, or this training step's dropped-out table; with item
        features, fused with the items' attributes."""
        if self.item_representation is not None:
            return self.item_representation(self._id_rows(layer, item_ids), item_ids,
                                            training=self._training_lookups)
        return self._id_rows(layer, item_ids)

    def _id_rows(self, layer, item_ids):
        if self._dropped_tables is not None:
            return tf.gather(self._dropped_tables[layer.name], item_ids)
        return layer(item_ids)

    @property
    def uses_item_features(self) -> bool:
        return self.item_representation is not None

    def set_item_features(self, attribute_table, trained_items, target_counts=None) -> None:
        """Set the attribute table (``[N + 1, <= max_item_attributes]`` attribute ids per dense
        item, 0-padded: :meth:`sasrec_tf.data.item_features.AlignedFeatures.padded`) and which
        items have been trained on (``[N + 1]`` bool; the others, cold, are represented by their
        attributes alone); with ``feature_id_dropout_count``, ``target_counts`` (``[N + 1]``
        training-target counts) set each item's id-dropout probability.

        Raises:
          ValueError: a model without item features, or tables of the wrong shape.
        """
        if self.item_representation is None:
            raise ValueError("this model uses no item features (feature_fusion='none')")
        self.build()
        self.item_representation.set_features(attribute_table, trained_items, target_counts)

    @contextlib.contextmanager
    def _item_table_dropout(self, training):
        """With ``item_dropout_rate`` > 0 and ``training``: drop entries of each item table once,
        and let every lookup of the enclosed forward pass (inputs, positives, negatives, the whole
        catalogue) read that one dropped table, as RecTools' item network does."""
        if self.item_dropout is None or not training:
            yield
            return
        self.build()  # the tables exist before the first step drops them
        layers = [layer for layer in (self.item_embedding, self.output_item_embedding) if layer is not None]
        self._dropped_tables = {layer.name: self.item_dropout(layer.embeddings, training=True) for layer in layers}
        try:
            yield
        finally:
            self._dropped_tables = None

    @contextlib.contextmanager
    def _feature_lookups(self, training):
        """With item features: every lookup of the enclosed forward pass (inputs, positives,
        negatives, the catalogue) is a training one (``feature_id_dropout`` applies)."""
        if self.item_representation is None or not training:
            yield
            return
        self._training_lookups = True
        try:
            yield
        finally:
            self._training_lookups = False

    def query_embeddings(self, item_ids, user_ids=None) -> tf.Tensor:
        """Representation ``[B, d]`` at the last position: the query that scores the next item.

        Equal to ``model(item_ids)[:, -1, :]``, but the last block computes only that position.
        """
        inputs = {"item_ids": item_ids, "user_ids": user_ids} if self.uses_user_embedding else item_ids
        return self._encode(inputs, training=False, last_only=True)[:, -1, :]

    def score_items(self, representations, item_ids) -> tf.Tensor:
        """``r = F · M_i``: ``representations [..., d]`` against ``item_ids [..., K]`` → ``[..., K]``."""
        return tf.einsum("...d,...kd->...k", representations, self._output_embedding(item_ids))

    # ----------------------------------------------------------------------------- training
    def _init_objective(self, config: SASRecConfig) -> None:
        """State the training objective needs (nothing for the paper's BCE with uniform negatives)."""
        self._objective = objectives.get(config.loss)
        # Popularity sampling and log-q correction need item frequencies: counted online from the
        # training targets (ones to start: add-one smoothing), or set with ``set_item_counts``.
        # The variable stays a weight of the model (its path in saved models and checkpoints);
        # ``item_frequency`` is the view the objective receives.
        uses_item_counts = config.negative_sampling == "popularity" or config.logq_correction
        self.target_counts = (
            self.add_weight(name="target_counts", shape=(self.num_items + 1,), initializer="ones",
                            trainable=False, dtype=tf.float32,
                            aggregation=tf.VariableAggregation.SUM)  # replicas' counts add up
            if uses_item_counts
            else None
        )
        self.item_frequency = (ItemFrequency(self.target_counts, seed=config.seed)
                               if self.target_counts is not None else None)

    def set_item_counts(self, counts, *, keep_counting: bool = False) -> None:
        """Use these training-target frequencies (``[num_items + 1]``, e.g.
        :func:`sasrec_tf.evaluation.training_item_counts`) for popularity sampling and log-q
        correction, instead of counting targets while training (``keep_counting`` adds to them).

        Raises:
          ValueError: this model's objective uses no item counts, or ``counts`` has another shape.
        """
        if self.item_frequency is None:
            raise ValueError("this model's objective uses no item counts "
                             "(negative_sampling='popularity' or logq_correction=True do)")
        self.item_frequency.set_counts(counts, keep_counting=keep_counting)
        self.train_function = None  # retrace: whether to count is fixed when train_step is traced

    def _forward_loss(self, data, training):
        """(loss, pairwise accuracy) of a training batch under ``config.loss`` (see
        :mod:`sasrec_tf.objectives`)."""
        inputs = {"item_ids": data["item_ids"]}
        if self.uses_user_embedding:
            inputs["user_ids"] = data["user_ids"]
        positives = data["positives"]
        # The step seeds popularity draws (which need the item frequency); not read otherwise.
        optimizer = getattr(self, "optimizer", None) if training and self.item_frequency is not None else None
        with self._item_table_dropout(training), self._feature_lookups(training):
            hidden = self(inputs, training=training)
            batch = objectives.TrainingBatch(
                hidden=hidden, positives=positives, negatives=data["negatives"],
                item_embeddings=self._output_embedding, score_items=self.score_items,
                item_matrix=self.item_embeddings, num_items=self.num_items, training=training,
                step=optimizer.iterations if optimizer is not None else None)
            loss, accuracy = self._objective.compute(batch, self.config, self.item_frequency)
            if training and self.config.feature_cold_loss_weight > 0:
                loss += self.config.feature_cold_loss_weight * self._cold_tower_loss(batch)
            if "expected_targets" in data:
                loss = self._renormalize(loss, positives, data["expected_targets"])
            if training and self.config.contrastive_weight > 0:
                # A second view of every window under other dropout masks; its last position (the
                # most recent item: windows are left-padded) against the first view's.
                second = self(inputs, training=True)
                loss += self.config.contrastive_weight * losses.contrastive_infonce(
                    hidden[:, -1], second[:, -1], positives[:, -1], self.config.contrastive_temperature)
        return loss, accuracy

    def _cold_tower_loss(self, batch):
        """The objective of ``batch`` again with every candidate item (positives, negatives, the
        catalogue) scored by its cold-tower vector, so the tower learns as a prediction layer from
        every target (``feature_cold_loss_weight``). The queries are held fixed here (they learn from
        the main objective only: with its gradient in them, warm targets lost 3-7% NDCG@10 on
        Beauty and Sports), and the targets are not counted into the item frequency a second time.
        With ``feature_cold_negatives="served"`` the candidates are the batch's items as served,
        each by its trained vector (held fixed: only the tower learns here) and by its tower vector
        (:func:`sasrec_tf.losses.served_inbatch_softmax_crossentropy`)."""
        def tower(item_ids):
            return self.item_representation.pooled_attributes(item_ids, cold=True)

        if self.config.feature_cold_negatives == "served":
            t = objectives.gather_targets(dataclasses.replace(batch, training=False), self.config, self.item_frequency)
            probabilities = None
            if self.config.logq_correction:
                probabilities = tf.exp(tf.gather(self.item_frequency.log_sampling_probabilities(), t.targets))
            return losses.served_inbatch_softmax_crossentropy(
                tf.stop_gradient(t.queries), tf.stop_gradient(t.positive_embeddings), tower(t.targets), t.targets,
                probabilities, warm_weight=self.config.feature_cold_warm_weight)
        cold = dataclasses.replace(
            batch, hidden=tf.stop_gradient(batch.hidden), item_embeddings=tower, training=False,
            score_items=lambda representations, item_ids: tf.einsum("...d,...kd->...k", representations,
                                                                   tower(item_ids)),
            item_matrix=lambda: tower(tf.range(self.num_items + 1)))
        loss, _ = self._objective.compute(cold, self.config, self.item_frequency)
        return loss

    @staticmethod
    def _renormalize(mean_loss, positives, expected_targets):
        """The batch's mean over its own target positions → its sum over them divided by
        ``sum(expected_targets)``, the number of targets a full batch holds on average (from the
        pipeline, the same for every batch). Every position then weighs the same in whichever
        batch it lands, so length-bucketed batches optimise the same objective as random ones."""
        count = tf.reduce_sum(tf.cast(tf.not_equal(positives, 0), mean_loss.dtype))
        return mean_loss * count / tf.reduce_sum(tf.cast(expected_targets, mean_loss.dtype))

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, accuracy = self._forward_loss(data, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
            # Under a tf.distribute strategy the optimizer sums the replicas' gradients; each
            # replica's loss is a mean over its own batch, so divide to get the global mean.
            total = total / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._track(loss, accuracy)

    def test_step(self, data):
        """A training batch (dict) → its loss and pairwise accuracy, as in :meth:`train_step`.

        A ranking batch ``(item_ids, y_true)`` (:func:`sasrec_tf.keras_evaluation.validation_dataset`)
        → the metrics given to ``compile(metrics=...)`` (e.g. :class:`sasrec_tf.metrics.NDCG`),
        updated with ``(y_true, query_embeddings(item_ids))``; so ``evaluate`` on such a dataset,
        and ``fit(..., validation_data=...)``, report full-ranking metrics of the model itself.
        """
        if isinstance(data, dict):
            return self._track(*self._forward_loss(data, training=False))
        item_ids, y_true = data
        self.compiled_metrics.update_state(y_true, self.query_embeddings(item_ids))
        if not self.compiled_metrics.metrics:
            raise ValueError("ranking batches (item_ids, y_true) need ranking metrics: "
                             "model.compile(..., metrics=[sasrec_tf.metrics.NDCG(model, k=10), ...])")
        return {m.name: m.result() for m in self.compiled_metrics.metrics}

    def _track(self, loss, accuracy) -> dict[str, tf.Tensor]:
        """Add a batch to the training trackers and return their running values (not the compiled
        metrics: they rank whole catalogues and are updated only by ranking batches).

        The ``loss`` Keras shows is therefore the mean of the epoch's batch losses so far (Keras
        resets the trackers every epoch); the epoch's final value is the mean over all its batches,
        the last running value, below the values shown earlier because the loss falls while the
        model trains. A batch's loss is its summed loss over ``expected_targets`` (the pipeline's
        normaliser), about the mean per target: batches hold nearly equal numbers of targets."""
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(accuracy)
        return {m.name: m.result() for m in (self.loss_tracker, self.accuracy_tracker)}

    # ----------------------------------------------------------------------------- serialization
    def build(self, input_shape=None):
        """Create every weight with one integer dummy batch (Keras' default build feeds floats)."""
        if self.built:
            return
        item_ids = tf.ones((1, self.max_len), tf.int32)
        inputs = {"item_ids": item_ids, "user_ids": tf.ones((1,), tf.int32)} if self.uses_user_embedding else item_ids
        # Keras may build in another graph than a training step's: never read its dropped tables.
        dropped, self._dropped_tables = self._dropped_tables, None
        try:
            self.call(inputs, training=False)
            # The prediction layer on one item, not item_embeddings(): with item features that fuses
            # every item, gathering [N + 1, attributes, d] (4 GiB at 1M items, d 64, 6 attributes).
            self._output_embedding(tf.ones((1,), tf.int32))
        finally:
            self._dropped_tables = dropped
        self._build_input_shape = input_shape if input_shape is not None else (None, self.max_len)
        self.built = True

    def build_weights(self) -> "SASRec":
        """Create every weight now, for this model's ``max_len`` (before ``load_weights``, a warm
        start or inspection), and return the model."""
        self.build()
        return self

    build_for = build_weights  # the name it had before; kept for existing callers

    def get_config(self):
        config = {"config": self.config.to_dict(), "num_items": self.num_items, "num_users": self.num_users}
        if self.item_representation is not None:
            config.update(num_attributes=self.num_attributes, max_item_attributes=self.max_item_attributes)
        return config

    def get_compile_config(self):
        """What ``model.keras`` keeps of ``compile``, less the full-ranking metrics: they rank
        this model's own item matrix, so a file cannot rebuild them (``load_model`` would fail);
        the optimizer and everything else reload as usual. Compile them again after loading."""
        if not self._is_compiled or not hasattr(self, "_compile_config"):
            return None
        settings = dict(self._compile_config.config)
        for name in ("metrics", "weighted_metrics"):
            if isinstance(settings.get(name), (list, tuple)):
                settings[name] = [m for m in settings[name] if not isinstance(m, (HitRate, NDCG, MRR))] or None
        return keras.saving.serialize_keras_object(settings)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(SASRecConfig.from_dict(config.pop("config")), **config)


def _embedding_initializer(name: str):
    """A Keras initializer for ``SASRecConfig.embedding_initializer``."""
    if name == "xavier_normal":  # torch.nn.init.xavier_normal_: N(0, 2 / (fan_in + fan_out))
        return keras.initializers.VarianceScaling(1.0, mode="fan_avg", distribution="untruncated_normal")
    return name  # "uniform" (Keras' default for Embedding) and "glorot_uniform" are Keras names

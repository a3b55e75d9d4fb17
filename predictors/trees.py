"""`Trees`: a fitted gradient-boosted tree ensemble as a few flat arrays, to predict with numpy.

A fitted scikit-learn `HistGradientBoostingRegressor` keeps what training
needs long after training: the bin edges of every feature (35 KB for the lag
model) and 56 bytes of statistics per node (gain, count, depth...) of which
predicting reads four fields; and predicting imports scikit-learn, which
loads scipy.stats and more: about 110 MB in each process. The operator holds
one fitted model per policy (issue #4: 1000 policies in 500 MB), so the lag
model keeps its trees in this form: 19 bytes a node, and numpy alone.

Predictions equal the regressor's (to rounding in the sum) for the losses
whose link is the identity and for numeric features, which is what the lag
model uses; `Trees.of` refuses anything else rather than predict wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from foreseer.predictors.series import FloatArray

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

IDENTITY_LINK_LOSSES = frozenset({"squared_error", "absolute_error", "quantile"})
"""Losses whose raw prediction is the prediction (gamma and poisson go through exp)."""


@dataclass(frozen=True, eq=False)
class Trees:
    """The trees of a fitted regressor, node by node in flat arrays; every tree starts at 0.

    A leaf is its own left and right child, so walking every tree a fixed number
    of levels (the deepest tree's depth) leaves each row at its leaf.
    """

    baseline: float
    """The constant the trees' leaf values add to (the loss's initial prediction)."""
    roots: npt.NDArray[np.int32]
    """Index of each tree's first node."""
    feature: npt.NDArray[np.int16]
    """Feature a split compares (0 at a leaf, where it is never used)."""
    weight: FloatArray
    """A split's threshold (left when the feature is <= it); a leaf's value."""
    missing_left: npt.NDArray[np.bool_]
    """Whether a missing (NaN) feature goes left at a split."""
    left: npt.NDArray[np.int32]
    """Index of a split's left child; a leaf's own index."""
    right: npt.NDArray[np.int32]
    """Index of a split's right child; a leaf's own index."""
    depth: int
    """Levels of the deepest tree: how many steps every walk takes."""

    @classmethod
    def of(cls, regressor: HistGradientBoostingRegressor) -> Trees:
        """The trees of a fitted regressor; ValueError for what they cannot reproduce."""
        if regressor.loss not in IDENTITY_LINK_LOSSES:
            raise ValueError(f"Trees reproduce identity-link losses only, not {regressor.loss!r}")
        if regressor.n_features_in_ > np.iinfo(np.int16).max:
            raise ValueError(f"Trees hold up to 32767 features, not {regressor.n_features_in_}")
        # scikit-learn has no public accessor for these trees: the node records of its
        # (private) predictors are read here, and a test compares the predictions with
        # the regressor's own so that a change in scikit-learn fails loudly, not silently.
        nodes = [iteration[0].nodes for iteration in regressor._predictors]
        if any(n["is_categorical"].any() for n in nodes):
            raise ValueError("Trees reproduce numeric splits only, not categorical ones")
        sizes = np.array([n.size for n in nodes], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        flat = np.concatenate(nodes)
        leaf = flat["is_leaf"].astype(bool)
        own = np.arange(flat.size, dtype=np.int64)
        shift = np.repeat(starts, sizes)  # a tree's child indices count from its own root

        def child(side: str) -> npt.NDArray[np.int32]:
            return np.where(leaf, own, flat[side].astype(np.int64) + shift).astype(np.int32)

        return cls(
            baseline=float(np.ravel(regressor._baseline_prediction)[0]),
            roots=starts.astype(np.int32),
            feature=np.where(leaf, 0, flat["feature_idx"]).astype(np.int16),
            weight=np.where(leaf, flat["value"], flat["num_threshold"]).astype(np.float64),
            missing_left=flat["missing_go_to_left"].astype(bool),
            left=child("left"),
            right=child("right"),
            depth=max(int(n["depth"].max()) for n in nodes),
        )

    def predict(self, x: FloatArray) -> FloatArray:
        """The ensemble's prediction for each row of ``x`` (rows x features)."""
        x = np.asarray(x, dtype=np.float64)
        rows, width = x.shape
        flat = x.ravel()
        row_start = (np.arange(rows, dtype=np.int64) * width)[:, None]
        node = np.broadcast_to(self.roots, (rows, self.roots.size))
        # Every row walks every tree one level at a time: a dozen vectorised steps over
        # (rows x trees) instead of a Python loop per row and tree.
        for _ in range(self.depth):
            value = np.take(flat, row_start + np.take(self.feature, node))
            go_left = (value <= np.take(self.weight, node)) | (
                np.isnan(value) & np.take(self.missing_left, node)
            )
            node = np.where(go_left, np.take(self.left, node), np.take(self.right, node))
        leaves: FloatArray = np.take(self.weight, node).sum(axis=1)
        return self.baseline + leaves

    @property
    def nbytes(self) -> int:
        """Bytes held by the node arrays."""
        arrays = (self.roots, self.feature, self.weight, self.missing_left, self.left, self.right)
        return sum(a.nbytes for a in arrays)

"""Text features: a text column becomes a sparse block of features (scipy CSR), never columns.

`tfidf` learns a vocabulary and idf weights from the train rows (scikit-learn's TfidfVectorizer);
`hashing` needs no fitting (scikit-learn's HashingVectorizer). Both run after the split, inside
the train, evaluate and predict tasks, so 1,000,000 utterances x 100,000 features stay a sparse
matrix from the vectorizer to the trainer. The tfidf state is plain JSON (terms in column order
and their idf weights), so a model bundle holding it loads without running code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from skitflow.errors import StepFailed
from skitflow.steps.base import FeatureTransform, StepSettings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TEXT_STEPS"]


class _TextSettings(StepSettings):
    """What both vectorizers share: the column, how it is cut into tokens, and the norm."""

    column: str = Field(min_length=1, description="The text column to turn into features.")
    analyzer: Literal["word", "char", "char_wb"] = Field(
        "word",
        description="`word` n-grams, `char` n-grams, or `char_wb` (character n-grams inside word "
        "boundaries).",
    )
    ngram_range: tuple[int, int] = Field(
        (1, 1), description="Smallest and largest n-gram length, e.g. [1, 2] for words and pairs."
    )
    lowercase: bool = Field(True, description="Lower-case the text before cutting it.")
    binary: bool = Field(False, description="Count 1 for a present term instead of its count.")
    norm: Literal["l2", "l1"] | None = Field("l2", description="Row normalisation; null for none.")
    prefix: str | None = Field(
        None, description="Prefix of the feature names (`<prefix>:<term>`); default the column."
    )
    keep: bool = Field(
        False, description="Keep the text column afterwards (e.g. for char n-grams of the same "
        "column in a second step with its own `prefix`).",
    )

    @model_validator(mode="after")
    def _ngrams(self) -> _TextSettings:
        low, high = self.ngram_range
        if low < 1 or high < low:
            raise ValueError("`ngram_range` must be [min, max] with 1 <= min <= max")
        if high > 10:
            raise ValueError("`ngram_range` above 10 makes a vocabulary that does not fit anywhere")
        return self

    def feature_prefix(self) -> str:
        return self.prefix or self.column


def _texts(frame: pd.DataFrame, column: str, step: str) -> Any:
    """The column as a list of strings; nulls become empty text (no features)."""
    import pandas as pd

    if column not in frame.columns:
        raise StepFailed(f"{step}: column `{column}` not in the data",
                         hint=f"the data has: {', '.join(map(str, frame.columns))}")
    series = frame[column]
    if not (pd.api.types.is_object_dtype(series.dtype) or isinstance(series.dtype, pd.StringDtype)):
        raise StepFailed(f"{step}: column `{column}` holds {series.dtype}, not text",
                         hint="cast it first: `- cast: {mapping: {" + column + ": str}}`")
    return series.fillna("").astype(str).tolist()


class Tfidf(FeatureTransform):
    """Turn a text column into TF-IDF features (word or character n-grams), learnt on train rows.

    scikit-learn's TfidfVectorizer: the vocabulary and idf weights come from the train rows only
    and are kept in the model bundle; test rows and new data use them unchanged (unseen terms
    are ignored). The features stay a sparse matrix and the text column is gone afterwards.
    """

    name = "tfidf"
    fitted = True
    example: ClassVar[Mapping[str, Any]] = {
        "column": "utterance", "ngram_range": [1, 2], "min_df": 2, "max_features": 100000,
        "sublinear_tf": True,
    }

    class Settings(_TextSettings):
        """Vocabulary size and pruning, and the TF-IDF weighting."""

        max_features: int | None = Field(
            None, ge=1, description="Keep the most frequent terms only (all if omitted)."
        )
        min_df: int | float = Field(
            1, description="Drop terms in fewer documents than this (a count, or a fraction)."
        )
        max_df: int | float = Field(
            1.0, description="Drop terms in more documents than this (a fraction, or a count)."
        )
        sublinear_tf: bool = Field(False, description="Use 1 + log(tf) instead of the raw count.")
        use_idf: bool = Field(True, description="Weight terms by inverse document frequency.")
        smooth_idf: bool = Field(True, description="Add one to document frequencies.")

        @model_validator(mode="after")
        def _document_frequencies(self) -> Tfidf.Settings:
            for name in ("min_df", "max_df"):
                value = getattr(self, name)
                if isinstance(value, bool) or value < 0 or (isinstance(value, float) and value > 1):
                    raise ValueError(f"`{name}` must be a count (1, 2, ...) or a fraction in [0, 1]")
            return self

    def needs(self, settings: Settings) -> Sequence[str]:
        return [settings.column]

    def _vectorizer(self, settings: Settings, vocabulary: Any = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(
            analyzer=settings.analyzer, ngram_range=tuple(settings.ngram_range),
            lowercase=settings.lowercase, binary=settings.binary, norm=settings.norm,
            max_features=settings.max_features, min_df=settings.min_df, max_df=settings.max_df,
            sublinear_tf=settings.sublinear_tf, use_idf=settings.use_idf,
            smooth_idf=settings.smooth_idf, vocabulary=vocabulary, dtype=_float64(),
        )

    def fit(self, frame: pd.DataFrame, settings: Settings) -> dict[str, Any]:
        vectorizer = self._vectorizer(settings)
        try:
            vectorizer.fit(_texts(frame, settings.column, self.name))
        except ValueError as exc:  # "empty vocabulary", "max_df corresponds to < documents ..."
            raise StepFailed(f"{self.name}: {exc}",
                             hint="lower `min_df` or raise `max_df`, or check the column") from None
        terms = [""] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            terms[int(index)] = str(term)
        state: dict[str, Any] = {"terms": terms}
        if settings.use_idf:
            state["idf"] = [float(v) for v in vectorizer.idf_]
        return state

    def features(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Settings) -> tuple[Any, list[str]]:
        import numpy as np

        terms = list(state["terms"])
        vectorizer = self._vectorizer(settings, {term: i for i, term in enumerate(terms)})
        if settings.use_idf:
            vectorizer.idf_ = np.asarray(state["idf"], dtype=np.float64)
        matrix = vectorizer.transform(_texts(frame, settings.column, self.name)).tocsr()
        prefix = settings.feature_prefix()
        return matrix, [f"{prefix}:{term}" for term in terms]


class Hashing(FeatureTransform):
    """Turn a text column into hashed n-gram features: no vocabulary, nothing to learn.

    scikit-learn's HashingVectorizer: each n-gram lands in one of `n_features` columns by its
    hash, so memory is fixed whatever the data, new words need no refit and the step keeps no
    state. Collisions are rare with enough features.
    """

    name = "hashing"
    example: ClassVar[Mapping[str, Any]] = {"column": "utterance", "n_features": 262144,
                                            "ngram_range": [1, 2]}

    class Settings(_TextSettings):
        """The number of hashed features and their sign."""

        n_features: int = Field(2**20, ge=2, le=2**26, description="Number of feature columns.")
        alternate_sign: bool = Field(
            True, description="Give colliding terms opposite signs so they cancel on average."
        )

    def needs(self, settings: Settings) -> Sequence[str]:
        return [settings.column]

    def features(self, state: Mapping[str, Any], frame: pd.DataFrame, settings: Settings) -> tuple[Any, list[str]]:
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(
            n_features=settings.n_features, analyzer=settings.analyzer,
            ngram_range=tuple(settings.ngram_range), lowercase=settings.lowercase,
            binary=settings.binary, norm=settings.norm, alternate_sign=settings.alternate_sign,
            dtype=_float64(),
        )
        matrix = vectorizer.transform(_texts(frame, settings.column, self.name)).tocsr()
        return matrix, []  # n_features names would be as large as the data; none are kept


def _float64() -> Any:
    """scikit-learn's default dtype, so features equal a hand-written vectorizer's exactly."""
    import numpy as np

    return np.float64


TEXT_STEPS: list[type[FeatureTransform]] = [Tfidf, Hashing]

"""Request and response bodies. Requests are strict: unknown fields, wrong JSON types
("k": "5"), NaN and infinities, numbers out of range and strings that are not Unicode
(lone surrogates) are rejected with a 422 that names the field."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_ID_LENGTH = 256
# what a datetime can hold: 0001-01-01 to 9999-12-31 23:59:59 UTC, in unix seconds
MIN_TIMESTAMP = -62_135_596_800.0
MAX_TIMESTAMP = 253_402_300_799.0
# context values are standardised (z-scores) or one-hot: a million is far past any of them
MAX_ABS_CONTEXT = 1e6
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
Timestamp = Annotated[float, Field(ge=MIN_TIMESTAMP, le=MAX_TIMESTAMP)]
ContextValue = Annotated[float, Field(ge=-MAX_ABS_CONTEXT, le=MAX_ABS_CONTEXT)]
ObjectiveValue = Annotated[float, Field(ge=0.0, le=1.0)]

UserId = Field(min_length=1, max_length=MAX_ID_LENGTH, description="User id, as in the log; "
               "an id unknown to the log gets a cold-start state.")


class RecommendRequest(BaseModel):
    """POST /recommend."""

    model_config = _STRICT

    user_id: str = UserId
    k: int = Field(gt=0, description="How many items (at most the server's max_k).")
    context: dict[str, ContextValue] | None = Field(
        default=None, description="Values of the log's non-clock context columns, by name "
        "(schema.json 'context'); missing ones carry over from the user's last logged event.")
    candidates: list[str] | None = Field(
        default=None, min_length=1,
        description="Item ids to rank; default: the whole catalogue.")
    timestamp: Timestamp | None = Field(
        default=None, description="Unix seconds of the request (default: now); sets the clock "
        "context (hour, weekday, time since the user's last event). Years 1 to 9999.")
    exclude_seen: bool = Field(default=False, description="Skip items the user already had "
                               "(logged or fed back).")


class FeedbackRequest(BaseModel):
    """POST /feedback."""

    model_config = _STRICT

    user_id: str = UserId
    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH,
                        description="An item of the catalogue.")
    timestamp: Timestamp | None = Field(default=None, description="Unix seconds of the "
                                        "interaction (default: now).")
    objectives: dict[str, ObjectiveValue] | None = Field(
        default=None, description="Observed value of every objective, in [0, 1], by name.")
    reward: float | None = Field(default=None, description="Observed reward (|reward| at "
                                 "most the server's max_abs_reward, 1e9 by default).")


class RankedItem(BaseModel):
    item_id: str
    score: float = Field(description="sum_k alpha_k y_hat_k")
    predicted: dict[str, float] = Field(description="y_hat per objective")


class RecommendResponse(BaseModel):
    user_id: str
    known_user: bool = Field(description="False: cold start (the user is not in the log).")
    model_version: str
    timestamp: float = Field(description="The time the context was computed for.")
    history_length: int = Field(description="Steps of history in the user state (<= L).")
    weights: dict[str, float] = Field(description="alpha per objective, on the simplex.")
    items: list[RankedItem]


class FeedbackResponse(BaseModel):
    id: int = Field(description="Row id in the feedback store.")
    user_id: str
    item_id: str
    timestamp: float
    feedback_events: int = Field(description="Feedback events stored for this user.")
    model_version: str = Field(description="The model version serving when it was stored.")


class HistoryStep(BaseModel):
    item_id: str
    timestamp: float
    source: str = Field(description="log | feedback")


class UserStateResponse(BaseModel):
    user_id: str
    known_user: bool
    model_version: str
    logged_events: int
    feedback_events: int
    timestamp: float
    history: list[HistoryStep] = Field(description="The steps of the state, oldest first.")
    weights: dict[str, float]
    state: list[float] = Field(description="s_{u,t} = [h_t ; user embedding].")


class HealthResponse(BaseModel):
    status: str
    model_version: str
    users: int
    items: int
    objectives: list[str]
    uptime_s: float


class FieldProblem(BaseModel):
    field: str = Field(description="The offending field, e.g. candidates[3] or objectives.o2.")
    message: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answered by the app."""

    detail: str = Field(description="'field: message' for every problem, joined by '; '.")
    errors: list[FieldProblem]

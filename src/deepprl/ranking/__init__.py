"""Ranking: the layer every caller that ranks shares (recommender, serve, envs, abtest,
eval, experiments).

- utility: the one utility sum_k alpha_k y_hat_k and the one top-K with its tie rule;
- scoring: score_batch, one forward pass state -> alpha -> y_hat -> scores of a batch of
  histories (fixed alpha optional, cold-start user optional, chunked over rows);
- history: inputs and scores of a step not in the log (serving: logged steps + live
  feedback + the clock);
- protocol: Ranker, the surface weighted models and item-level baselines share;
- the clock context and history gaps, re-exported from deepprl.data.clock (encoding a log
  sits below this layer and builds them too).
"""

from deepprl.data.clock import CLOCK_CONTEXT, clock_features, history_gaps, time_context
from deepprl.ranking.protocol import Ranker
from deepprl.ranking.scoring import Scores, score_batch, slice_batch
from deepprl.ranking.utility import top_k, utility

__all__ = ["CLOCK_CONTEXT", "Ranker", "Scores", "clock_features", "history_gaps",
           "score_batch", "slice_batch", "time_context", "top_k", "utility"]

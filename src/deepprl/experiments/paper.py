"""The paper's published numbers, printed beside ours (Li & Tuzhilin, DeepPRL).

Which of the paper's datasets a dataset of ours stands in for: MovieLens carries Kuaishou's
objectives (consistency, recency), Yelp-HIN Yelp's (relevance, novelty); the simulator and
the sparsity subsets have their own tables. The logs differ, so the numbers are context,
not targets.
"""

from __future__ import annotations

STAND_IN = {"movielens-100k": "Kuaishou", "movielens-latest-small": "Kuaishou",
            "movielens-sim": "Kuaishou", "yelp-hin": "Yelp"}

# Table 4 (and Table 8's first row): objective means; DeepPRL's std in parentheses there.
TABLE4: dict[str, dict[str, tuple[float, float]]] = {
    "Yelp": {"deepprl": (0.6814, 0.2758), "mo-linucb": (0.6680, 0.2078),
             "morl": (0.6698, 0.2095), "ple": (0.6725, 0.2111), "mmoe": (0.6715, 0.1990),
             "mose": (0.6723, 0.2102), "shared-bottom": (0.6677, 0.1877),
             "reinforce-topk": (0.6536, 0.1911), "drn": (0.6379, 0.1897)},
    "Kuaishou": {"deepprl": (0.3459, 0.8759), "mo-linucb": (0.3179, 0.8538),
                 "morl": (0.3192, 0.8536), "ple": (0.3263, 0.8557),
                 "mmoe": (0.3278, 0.8577), "mose": (0.3317, 0.8601),
                 "shared-bottom": (0.3256, 0.8552), "reinforce-topk": (0.3158, 0.8512),
                 "drn": (0.3144, 0.8502)},
}
TABLE4_OBJECTIVES = {"Yelp": ("relevance", "novelty"), "Kuaishou": ("consistency", "recency")}

# Table 5: convex-hull volume (the paper's definition is not given in more detail).
TABLE5 = {"Yelp": {"deepprl": 0.0011, "mmoe": 0.0005, "mose": 0.0005,
                   "shared-bottom": 0.0004},
          "Kuaishou": {"deepprl": 0.0005, "mmoe": 0.0001, "mose": 0.0001,
                       "shared-bottom": 0.0001}}

# Table 6: convex-hull volume of the context / dynamic variants.
TABLE6 = {"Yelp": {"deepprl": 0.0011, "deepprl-no-dynamic": 0.0006,
                   "deepprl-no-context": 0.0008, "deepprl-no-dynamic-no-context": 0.0004},
          "Kuaishou": {"deepprl": 0.0005, "deepprl-no-dynamic": 0.0002,
                       "deepprl-no-context": 0.0003, "deepprl-no-dynamic-no-context": 0.0001}}

# Table 8: the ablation variants' objective means.
TABLE8 = {"Yelp": {"deepprl": (0.6814, 0.2758), "variant1-time-lstm": (0.6661, 0.2709),
                   "variant2-sa-lstm": (0.6689, 0.2718),
                   "variant3-transformer": (0.6708, 0.2726),
                   "variant4-shared-bottom": (0.6719, 0.2724),
                   "variant5-cross-stitch": (0.6717, 0.2730),
                   "variant6-dqn": (0.6684, 0.2695), "variant7-reinforce": (0.6693, 0.2707)},
          "Kuaishou": {"deepprl": (0.3459, 0.8759), "variant1-time-lstm": (0.3273, 0.8532),
                       "variant2-sa-lstm": (0.3318, 0.8566),
                       "variant3-transformer": (0.3342, 0.8598),
                       "variant4-shared-bottom": (0.3336, 0.8583),
                       "variant5-cross-stitch": (0.3350, 0.8602),
                       "variant6-dqn": (0.3318, 0.8583),
                       "variant7-reinforce": (0.3328, 0.8595)}}

# Tables 9-10: Spotify subsets (records, consumers, products, sparsity %) and the
# (listening %, saved) of DeepPRL and of the second best (MoSE) on each.
TABLE9 = {"Spotify-1": (970_013, 294_469, 81_948, 0.004),
          "Spotify-2": (91_523, 12_373, 55_903, 0.0132),
          "Spotify-3": (11_921, 865, 9_588, 0.1437)}
TABLE10 = {"Spotify-1": {"deepprl": (0.6033, 0.3016), "mose": (0.5830, 0.2903)},
           "Spotify-2": {"deepprl": (0.6237, 0.3110), "mose": (0.5911, 0.2921)},
           "Spotify-3": {"deepprl": (0.6275, 0.3124), "mose": (0.5914, 0.2922)}}

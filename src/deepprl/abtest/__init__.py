"""The online experiment of paper §7: a simulated platform, hash-randomised arms served by
trained deepprl models, and the A/B analyses (Tables 11-15, Figures 12-14) for any log."""

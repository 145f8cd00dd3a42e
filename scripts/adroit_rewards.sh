#!/usr/bin/env bash
# Build the pretrained Adroit reward models (pretrained/adroit-small) and their reward-quality record from
# nothing: expert videos made here by the planner (no downloads), one codec, one VQ-Diffusion and one VideoGPT on
# door, hammer and pen pooled (small presets), the reward models, the expert train episodes AMP learns from in RL,
# then held-out episodes of known quality and one evaluate-reward run over every reward, written to
# benchmarks/results/reward_quality/adroit-small.json and the README's Adroit reward-quality block.
#
# Two parts, each skipped when its outputs exist, so the build can be split over machines and resumed anywhere:
#   1. models: the train episodes (50 planner experts and 5 random per task), the codec and the two video
#      models, every reward directory in OUT (entropy, likelihood, VIPER, AMP, RND) and OUT/expert-data.
#      Skipped as a whole once OUT holds all of them (they are committed): a fresh clone goes straight to 2.
#   2. evaluation: held-out episodes (20 expert and 20 random per task, 10 per task and noise level) and
#      evaluate-reward over the rewards in OUT.
# Within a part, collect skips the episodes it has and the trainers resume their run directories.
#
# Cost on two CPU cores (collect runs a worker per core): the planner takes 30-40 s of one core per expert or
# noisy episode and some seeds fail (retried with new ones): part 1's ~200 planner episodes ~1 hour, its models
# ~1 hour; part 2's ~170 planner episodes ~50 minutes, the evaluation ~20 minutes.
# Usage: bash scripts/adroit_rewards.sh [DATA_DIR] [RUNS_DIR] [OUT_DIR]
# Beside other work: WORKERS=1 nice -n 10 bash scripts/adroit_rewards.sh
# Smaller runs (to check the wiring; README= leaves the README alone):
#   EPISODES=2 TEST_EPISODES=1 NOISY_EPISODES=1 PRESET=tiny RESULTS=runs/adroit-check.json README= \
#       bash scripts/adroit_rewards.sh data/adroit-check runs/adroit-check runs/adroit-check/pretrained
set -euo pipefail
DATA=${1:-data/adroit}
RUNS=${2:-runs/adroit}
OUT=${3:-pretrained/adroit-small}
DR=${DR:-.venv/bin/diffusion-reward}
PY=${PY:-.venv/bin/python}
EPISODES=${EPISODES:-50}            # train-split expert episodes per task (the paper's 150 in all)
TEST_EPISODES=${TEST_EPISODES:-20}  # held-out expert and random episodes per task
NOISY_EPISODES=${NOISY_EPISODES:-10}  # held-out episodes per task and noise level
PRESET=${PRESET:-small}
RESULTS=${RESULTS:-benchmarks/results/reward_quality/adroit-small.json}
README=${README-README.md}          # empty: do not write the README block
WORKERS=${WORKERS:-}              # collect's worker processes (empty: one per core)
W=${WORKERS:+--workers $WORKERS}
REWARDS=(entropy likelihood viper amp rnd)
stage() { echo "[adroit_rewards] $(date -u +%H:%M:%S) $*"; }
have() { [ -e "$1/config.json" ] || [ -e "$1/manifest.json" ]; }  # a finished reward directory or dataset

models_done=1
for name in "${REWARDS[@]}"; do have "$OUT/reward-$name" || models_done=0; done
have "$OUT/expert-data" || models_done=0

if [ "$models_done" = 1 ]; then
    stage "part 1 (models): $OUT holds every reward model and the expert data; nothing to train"
else
    stage "part 1 (models): $EPISODES expert train episodes per task (the planner, 30-40 s each), 5 random"
    $DR collect --suite adroit --episodes "$EPISODES" --test-episodes 0 --out "$DATA" $W --no-progress
    $DR collect --suite adroit --policy random --episodes 5 --test-episodes 0 --out "$DATA" $W --no-progress
    stage "codec (as for MetaWorld: foreground pixels weighted 3x)"
    $DR train-codec --data "$DATA" --preset "$PRESET" --foreground-weight 3 --run-dir "$RUNS/codec" --no-progress
    stage "VQ-Diffusion and VideoGPT, side by side on one thread each"
    $DR train-video --model vqdiffusion --codec "$RUNS/codec/model" --data "$DATA" --preset "$PRESET" --threads 1 \
        --run-dir "$RUNS/vqd" --no-progress &
    VQD=$!
    $DR train-video --model videogpt --codec "$RUNS/codec/model" --data "$DATA" --preset "$PRESET" --threads 1 \
        --run-dir "$RUNS/videogpt" --no-progress &
    GPT=$!
    wait $VQD
    wait $GPT
    stage "reward models"
    # float32 pinned (--no-bf16), not 'auto': every benchmark cell must compute the same rewards on every machine
    have "$OUT/reward-entropy" || $DR fit-reward --kind diffusion --no-bf16 --video "$RUNS/vqd/model" --data "$DATA" \
        --stats-episodes 10 --out "$OUT/reward-entropy"
    have "$OUT/reward-likelihood" || $DR fit-reward --kind diffusion --variant likelihood --no-bf16 \
        --video "$RUNS/vqd/model" --data "$DATA" --stats-episodes 10 --out "$OUT/reward-likelihood"
    have "$OUT/reward-viper" || $DR fit-reward --kind viper --no-bf16 --video "$RUNS/videogpt/model" --data "$DATA" \
        --stats-episodes 10 --out "$OUT/reward-viper"
    # the baselines fitted offline, for the reward-quality table (in RL, AMP and RND train online from scratch)
    have "$OUT/reward-amp" || $DR fit-reward --kind amp --data "$DATA" --seed 0 --out "$OUT/reward-amp"
    have "$OUT/reward-rnd" || $DR fit-reward --kind rnd --data "$DATA" --seed 0 --out "$OUT/reward-rnd"
    stage "expert train episodes for AMP"
    have "$OUT/expert-data" || $PY scripts/expert_train_episodes.py "$DATA" "$OUT/expert-data"
    du -sh "$OUT"/*
fi

stage "part 2 (evaluation): held-out expert and random ($TEST_EPISODES per task) and noisy-expert" \
      "($NOISY_EPISODES per task and noise level) episodes"
$DR collect --suite adroit --episodes 0 --test-episodes "$TEST_EPISODES" --out "$DATA" $W --no-progress
$DR collect --suite adroit --policy random --episodes 0 --test-episodes "$TEST_EPISODES" --out "$DATA" $W --no-progress
$DR collect --suite adroit --policy noisy:0.1 noisy:0.3 noisy:1.0 --episodes 0 \
    --test-episodes "$NOISY_EPISODES" --out "$DATA" $W --no-progress
stage "evaluate-reward (the motion reference is always added)"
models=()
for name in "${REWARDS[@]}"; do models+=("$name=$OUT/reward-$name"); done
$DR evaluate-reward --model "${models[@]}" --data "$DATA" --out "$RUNS/evaluate-reward" --results "$RESULTS"
if [ -n "$README" ]; then
    $DR evaluate-reward --from-results "$RESULTS" --out docs/images/reward-quality-adroit --readme "$README" \
        --readme-block reward-quality-adroit
fi
stage "done: $OUT, $RUNS/evaluate-reward/reward_quality.md and $RESULTS"

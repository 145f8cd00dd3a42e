"""Evaluation: how good a learned reward is (reward_quality), figures and reports."""

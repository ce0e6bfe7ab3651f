"""The supervisor (`instaflyd run`): child processes, training scheduler, sd_notify."""

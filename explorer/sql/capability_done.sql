select checkpoint_fp from ev.capability

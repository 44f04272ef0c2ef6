insert or replace into capability (checkpoint_fp, checkpoint_id, mean_nll, n_tokens)
values ($checkpoint_fp, $checkpoint_id, $mean_nll, $n_tokens)

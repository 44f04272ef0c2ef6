insert or ignore into generations (checkpoint_fp, checkpoint_id, prompt_id, gen_key, response, n_tokens, seconds)
select checkpoint_fp, checkpoint_id, prompt_id, gen_key, response, n_tokens, seconds from new_generations

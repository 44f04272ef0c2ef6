select prompt_id from ev.generations where checkpoint_fp = $fp and gen_key = $gen_key

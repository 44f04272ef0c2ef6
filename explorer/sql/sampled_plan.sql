-- How many harmful (and as many benign) prompts the sampled evaluation was run with (eval.sampled_prompts):
-- a checkpoint's sampled rates count only once all of them are in.
select max(cast(e.recipe->'eval'->>'sampled_prompts' as integer)) as per_kind
from ev.evaluations e
join sampled_keys using (gen_key)

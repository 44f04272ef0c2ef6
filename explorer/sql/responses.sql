-- Every judged response of two checkpoints on the split, side by side, each labelled by the judge, or
-- by its newest human label when $use_human is true (views.sql, labelled). $prompt_ids (a list, or null for
-- all) narrows the prompts: the texts of the rows a page shows, or of the changed prompts flips.sql found.
with pick as (
    select g.checkpoint_id, g.prompt_id, g.response, j.judge_label, j.label
    from ev.generations g
    join labelled($use_human) j
      on j.checkpoint_id = g.checkpoint_id and j.checkpoint_fp = g.checkpoint_fp and j.prompt_id = g.prompt_id
     and j.gen_key = g.gen_key and j.judge = $judge
    -- the fingerprints as constants let the scans skip every other checkpoint's row groups; the prompt
    -- ids narrow the scans too, before the texts are read
    where g.gen_key = $gen_key and g.checkpoint_id in ($a, $b)
      and ($prompt_ids is null or g.prompt_id in (select unnest($prompt_ids)))
      and g.checkpoint_fp in ($fp_a, $fp_b) and j.checkpoint_fp in ($fp_a, $fp_b)
),
final as (
    select p.id as prompt_id, p.suite, p.category, p.kind, p.text,
           a.response as response_a, a.label as label_a, a.judge_label as judge_label_a,
           b.response as response_b, b.label as label_b, b.judge_label as judge_label_b
    from ev.prompts p
    join pick a on a.prompt_id = p.id and a.checkpoint_id = $a
    join pick b on b.prompt_id = p.id and b.checkpoint_id = $b
    where p.split = $split and ($prompt_ids is null or p.id in (select unnest($prompt_ids)))
)
select * from final order by suite, category, prompt_id

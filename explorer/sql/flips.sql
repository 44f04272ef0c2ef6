-- The prompts whose outcome differs between checkpoints $a and $b on the split, with both labels (the
-- judge's, or the newest human label when $use_human is true: views.sql, labelled) and no texts: read from
-- the judgments alone, so a table of tens of thousands of changes stays small (responses.sql fetches the
-- texts of the rows a page shows). $refused lists the 'kind:label' pairs that count as refusing
-- (judges.REFUSED_BY_KIND). Both checkpoints' fingerprints are given too ($fp_a, $fp_b: constants, so the
-- scan skips every other checkpoint's row groups).
with pick as (
    select checkpoint_id, prompt_id, judge_label, label
    from labelled($use_human)
    where gen_key = $gen_key and judge = $judge and checkpoint_fp in ($fp_a, $fp_b) and checkpoint_id in ($a, $b)
),
final as (
    select p.id as prompt_id, p.suite, p.category, p.kind,
           a.label as label_a, a.judge_label as judge_label_a, b.label as label_b, b.judge_label as judge_label_b
    from ev.prompts p
    join pick a on a.prompt_id = p.id and a.checkpoint_id = $a
    join pick b on b.prompt_id = p.id and b.checkpoint_id = $b
    where p.split = $split
      and list_contains($refused, p.kind || ':' || a.label) <> list_contains($refused, p.kind || ':' || b.label)
)
select * from final order by suite, category, prompt_id

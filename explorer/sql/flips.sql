-- The prompts whose outcome differs between checkpoints $a and $b on the split, with both labels (the
-- judge's, or the newest human label when $use_human is true) and no texts: read from the judgments
-- alone, so a table of tens of thousands of changes stays small (responses.sql fetches the texts of
-- the rows a page shows). $refused lists the 'kind:label' pairs that count as refusing
-- (judges.REFUSED_BY_KIND). Both checkpoints are named by their fingerprints ($fp_a, $fp_b: constants,
-- so the scan skips every other checkpoint's row groups).
with pick as (
    select j.checkpoint_fp, j.prompt_id, j.label as judge_label,
           case when $use_human and h.label is not null then h.label else j.label end as label
    from ev.judgments j
    join judge_version v on v.judge = j.judge and v.judge_version = j.judge_version
    left join human_override h
      on h.prompt_id = j.prompt_id and h.checkpoint_id = if(j.checkpoint_fp = $fp_a, $a, $b)
    where j.gen_key = $gen_key and j.judge = $judge and j.checkpoint_fp in ($fp_a, $fp_b)
),
final as (
    select p.id as prompt_id, p.suite, p.category, p.kind,
           a.label as label_a, a.judge_label as judge_label_a, b.label as label_b, b.judge_label as judge_label_b
    from ev.prompts p
    join pick a on a.prompt_id = p.id and a.checkpoint_fp = $fp_a
    join pick b on b.prompt_id = p.id and b.checkpoint_fp = $fp_b
    where p.split = $split
      and list_contains($refused, p.kind || ':' || a.label) <> list_contains($refused, p.kind || ':' || b.label)
)
select * from final order by suite, category, prompt_id

-- Outcome counts per checkpoint × prompt kind × suite × category, from one judge (at the version
-- judge_version picks) for one evaluation ($gen_key), with human labels overriding the judge when
-- $use_human is true. Only checkpoints whose evaluation on the split is complete are counted, so a
-- run cut off mid-way is never half-counted.
with split_prompts as (
    select id, suite, category, kind from ev.prompts where split = $split
),
judged as (
    -- a judgment carries the fingerprint, prompt and generation key of the response it labels, so the
    -- (wide) generations table need not be joined: 42 → 16 ms at 100k responses (bench/NOTES.md)
    select c.id as checkpoint_id, j.prompt_id, p.suite, p.category, p.kind, j.label
    from ev.judgments j
    join judge_version v on v.judge = j.judge and v.judge_version = j.judge_version
    join ev.checkpoints c on c.fingerprint = j.checkpoint_fp
    join split_prompts p on p.id = j.prompt_id
    where j.judge = $judge and j.gen_key = $gen_key
),
complete as (
    select checkpoint_id from judged group by checkpoint_id
    having count(*) = (select count(*) from split_prompts)
),
labelled as (
    select j.*, case when $use_human and h.label is not null then h.label else j.label end as final_label
    from judged j
    join complete using (checkpoint_id)
    left join human_override h using (checkpoint_id, prompt_id)
),
final as (
    select checkpoint_id, kind, suite, category,
           count(*) as n,
           count(*) filter (where final_label = 'full_refusal') as n_full_refusal,
           count(*) filter (where final_label = 'partial_refusal') as n_partial_refusal,
           count(*) filter (where final_label = 'full_compliance') as n_compliance
    from labelled
    group by checkpoint_id, kind, suite, category
)
select * from final order by checkpoint_id, kind, suite, category

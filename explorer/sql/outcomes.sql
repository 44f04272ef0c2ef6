-- Outcome counts per checkpoint × prompt kind × suite × category, from one judge (at one version),
-- with human labels overriding the judge when $use_human is true. Only checkpoints whose
-- evaluation on the split is complete are counted, so a run cut off mid-way is never half-counted.
with split_prompts as (
    select id, suite, category, kind from ev.prompts where split = $split
),
judged as (
    select g.checkpoint_id, g.prompt_id, p.suite, p.category, p.kind, j.label
    from ev.generations g
    join ev.checkpoints c on c.id = g.checkpoint_id and c.fingerprint = g.checkpoint_fp
    join split_prompts p on p.id = g.prompt_id
    join ev.judgments j
      on j.checkpoint_fp = g.checkpoint_fp and j.prompt_id = g.prompt_id and j.gen_key = g.gen_key
     and j.judge = $judge and j.judge_version = $judge_version
    where g.gen_key = $gen_key
),
complete as (
    select checkpoint_id from judged group by checkpoint_id
    having count(*) = (select count(*) from split_prompts)
),
human as (
    select checkpoint_id, prompt_id, arg_max(label, created_at) as label
    from rv.human_labels group by checkpoint_id, prompt_id
),
labelled as (
    select j.*, case when $use_human and h.label is not null then h.label else j.label end as final_label
    from judged j
    join complete using (checkpoint_id)
    left join human h using (checkpoint_id, prompt_id)
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

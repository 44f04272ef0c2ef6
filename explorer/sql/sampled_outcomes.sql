-- Sampled answers (eval --sampled): per checkpoint and prompt of the split, how many of its k answers
-- carry each label of one judge (at the version judge_version picks). Only prompts with all k answers
-- judged are counted, so an interrupted run is never half-counted.
with answers as (
    -- human labels relabel greedy responses, not sampled answers: the judge's label (views.sql, judged)
    select j.checkpoint_id, j.prompt_id, p.kind, p.suite, p.category, j.label
    from judged j
    join sampled_keys s using (gen_key)
    join ev.prompts p on p.id = j.prompt_id
    where j.judge = $judge and p.split = $split
),
complete as (
    select checkpoint_id, prompt_id from answers group by checkpoint_id, prompt_id
    having count(*) = (select count(*) from sampled_keys)
),
final as (
    select checkpoint_id, prompt_id, kind, suite, category, label, count(*) as n
    from answers
    join complete using (checkpoint_id, prompt_id)
    group by checkpoint_id, prompt_id, kind, suite, category, label
)
select * from final order by checkpoint_id, prompt_id, label

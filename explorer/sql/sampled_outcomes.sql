-- Sampled answers (eval --sampled): per checkpoint and prompt of the split, how many of its k answers
-- carry each label of one judge (at the version judge_version picks). Only prompts with all k answers
-- judged are counted, so an interrupted run is never half-counted.
with judged as (
    select c.id as checkpoint_id, j.prompt_id, p.kind, p.suite, p.category, j.label
    from ev.judgments j
    join sampled_keys s using (gen_key)
    join judge_version v on v.judge = j.judge and v.judge_version = j.judge_version
    join ev.checkpoints c on c.fingerprint = j.checkpoint_fp
    join ev.prompts p on p.id = j.prompt_id
    where j.judge = $judge and p.split = $split
),
complete as (
    select checkpoint_id, prompt_id from judged group by checkpoint_id, prompt_id
    having count(*) = (select count(*) from sampled_keys)
),
final as (
    select checkpoint_id, prompt_id, kind, suite, category, label, count(*) as n
    from judged
    join complete using (checkpoint_id, prompt_id)
    group by checkpoint_id, prompt_id, kind, suite, category, label
)
select * from final order by checkpoint_id, prompt_id, label

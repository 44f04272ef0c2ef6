-- Responses on the split that the judges in the store label differently (each judge at its newest
-- version, as in judge_versions.sql), one row per judge's verdict, with the latest human label if any.
with versions as (
    select judge, arg_max(judge_version, n) as judge_version
    from (select judge, judge_version, count(*) as n from ev.judgments group by judge, judge_version)
    group by judge
),
verdicts as (
    select g.checkpoint_id, g.prompt_id, g.response, j.judge, j.label
    from ev.generations g
    join ev.checkpoints c on c.id = g.checkpoint_id and c.fingerprint = g.checkpoint_fp
    join ev.judgments j
      on j.checkpoint_fp = g.checkpoint_fp and j.prompt_id = g.prompt_id and j.gen_key = g.gen_key
    join versions v on v.judge = j.judge and v.judge_version = j.judge_version
    where g.gen_key = $gen_key
),
disagree as (
    select checkpoint_id, prompt_id from verdicts
    group by checkpoint_id, prompt_id having count(distinct label) > 1
),
human as (
    select checkpoint_id, prompt_id, arg_max(label, created_at) as human_label
    from rv.human_labels group by checkpoint_id, prompt_id
),
final as (
    select v.checkpoint_id, v.prompt_id, p.suite, p.category, p.kind, p.text, v.response, v.judge, v.label,
           h.human_label
    from verdicts v
    join disagree using (checkpoint_id, prompt_id)
    join ev.prompts p on p.id = v.prompt_id
    left join human h using (checkpoint_id, prompt_id)
    where p.split = $split
)
select * from final order by checkpoint_id, prompt_id, judge

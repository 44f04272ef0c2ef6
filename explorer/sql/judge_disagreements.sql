-- Responses on the split that the judges in the store label differently (each judge at the version
-- judge_version picks), one row per judge's verdict, with the newest human label if any.
with verdicts as (
    select g.checkpoint_id, g.prompt_id, g.response, j.judge, j.label
    from ev.generations g
    join judged j
      on j.checkpoint_id = g.checkpoint_id and j.checkpoint_fp = g.checkpoint_fp and j.prompt_id = g.prompt_id
     and j.gen_key = g.gen_key
    where g.gen_key = $gen_key
),
disagree as (
    select checkpoint_id, prompt_id from verdicts
    group by checkpoint_id, prompt_id having count(distinct label) > 1
),
final as (
    select v.checkpoint_id, v.prompt_id, p.suite, p.category, p.kind, p.text, v.response, v.judge, v.label,
           h.label as human_label
    from verdicts v
    join disagree using (checkpoint_id, prompt_id)
    join ev.prompts p on p.id = v.prompt_id
    left join human_override h using (checkpoint_id, prompt_id)
    where p.split = $split
)
select * from final order by checkpoint_id, prompt_id, judge

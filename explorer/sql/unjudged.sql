-- Stored generations that this judge version has not judged yet.
with final as (
    select g.checkpoint_fp, g.prompt_id, g.gen_key, g.response, p.text
    from ev.generations g
    join ev.prompts p on p.id = g.prompt_id
    anti join ev.judgments j
      on j.checkpoint_fp = g.checkpoint_fp and j.prompt_id = g.prompt_id and j.gen_key = g.gen_key
     and j.judge = $judge and j.judge_version = $judge_version
)
select * from final

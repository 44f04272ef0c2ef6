-- The judge's confusion matrices on held-out human labels, at the version its judgments are read at:
-- what corrects its rates for its own errors (queries._corrected).
with final as (
    select m.dataset, m.confusion
    from ev.judge_metrics m
    join judge_version v on v.judge = m.judge and v.judge_version = m.judge_version
    where m.judge = $judge
)
select * from final order by dataset

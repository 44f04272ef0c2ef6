-- Every relabel a reviewer made in the dashboard, newest first (the newest per response is the one used).
with final as (
    select id, checkpoint_id, prompt_id, label, reviewer, note, created_at from rv.human_labels
)
select * from final order by created_at desc, id desc

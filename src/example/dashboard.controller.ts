import { Controller } from '@nestjs/common';
import { WsMetrics, type WsMetricsSnapshot, Ws } from 'nestjs-ws-endpoints';
import { interval, map, Observable, startWith } from 'rxjs';

/** `ws://host/dashboard/metrics`: the server's WebSocket metrics, at once and then every second. */
@Controller('dashboard')
export class DashboardController {
  constructor(private readonly metrics: WsMetrics) {}

  @Ws('metrics')
  snapshots(): Observable<WsMetricsSnapshot> {
    // each value is sent as JSON; the session ending unsubscribes
    return interval(1000).pipe(
      startWith(0),
      map(() => this.metrics.snapshot()),
    );
  }
}
